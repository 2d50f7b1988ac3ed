// Reading the small JSON objects clients send (GraphQL variables, control requests) with
// simdjson's DOM API, with one error message for the first bad argument.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "dataset.hpp"

namespace upstream_sim {

// `body` as a JSON object, or nullopt. `parser` owns the memory the object points into.
[[nodiscard]] std::optional<simdjson::dom::object> parse_object(simdjson::dom::parser& parser,
                                                                const std::string& body);

// Typed, range-checked lookups. A missing or null argument gives the default; a present one of
// the wrong type or out of range records an error (the first one wins) and gives the default.
class Args {
 public:
  Args() = default;  // no arguments at all
  // `label` prefixes names in messages: "$" for GraphQL variables ("$first must be ...").
  explicit Args(simdjson::dom::object obj, std::string label = "")
      : obj_(obj), present_(true), label_(std::move(label)) {}

  [[nodiscard]] bool has(std::string_view name) const;  // present and not null
  std::int64_t integer(std::string_view name, std::int64_t def, std::int64_t lo, std::int64_t hi);
  std::optional<std::string> string(std::string_view name);
  std::optional<Micros> time(std::string_view name);  // an RFC 3339 string
  std::vector<std::string> strings(std::string_view name);

  [[nodiscard]] const std::string& error() const { return error_; }
  void fail(std::string_view name, std::string_view what);

 private:
  [[nodiscard]] std::optional<simdjson::dom::element> get(std::string_view name) const;

  simdjson::dom::object obj_;
  bool present_ = false;
  std::string label_;
  std::string error_;
};

}  // namespace upstream_sim
