// Text helpers shared by the simulator's handlers: JSON string escaping (responses are written
// by hand, so escaping is the one thing that must be right), base64 for cursors and HTTP Basic
// credentials, and URL query strings.
#pragma once

#include "core/json_text.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace upstream_sim {

// `s` as a JSON string literal: the project's one escaper (core/json_text.hpp).
using ingestd::json_quote;

[[nodiscard]] std::string base64_encode(std::string_view bytes);
// nullopt for anything that is not canonical padded base64.
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view text);

// Percent-encodes everything but RFC 3986 unreserved characters (so '+' and ':' are encoded).
[[nodiscard]] std::string url_encode(std::string_view s);
// Decodes %XX and '+' (a space, as in HTML forms); nullopt for a broken %-escape.
[[nodiscard]] std::optional<std::string> url_decode(std::string_view s);

// "a=1&b=x%20y" -> {a: "1", b: "x y"}; a later duplicate wins. nullopt on a broken escape.
using Params = std::map<std::string, std::string>;
[[nodiscard]] std::optional<Params> parse_params(std::string_view query);

// A whole-string decimal integer, or nullopt ("12abc", "" and overflow are all refused).
[[nodiscard]] std::optional<std::int64_t> parse_int(std::string_view s);

}  // namespace upstream_sim
