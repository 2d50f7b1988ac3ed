// Writing JSON by hand (the spool envelope, checkpoints, request bodies): one escaping rule.
#pragma once

#include <string>
#include <string_view>

namespace ingestd {

// `s` as a JSON string literal, quotes included; control characters as \uXXXX.
[[nodiscard]] std::string json_quote(std::string_view s);

}  // namespace ingestd
