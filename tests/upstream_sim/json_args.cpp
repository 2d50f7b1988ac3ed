#include "json_args.hpp"

#include <fmt/format.h>

namespace upstream_sim {

std::optional<simdjson::dom::object> parse_object(simdjson::dom::parser& parser,
                                                  const std::string& body) {
  simdjson::dom::object obj;
  if (parser.parse(body).get(obj) != simdjson::SUCCESS) return std::nullopt;
  return obj;
}

std::optional<simdjson::dom::element> Args::get(std::string_view name) const {
  simdjson::dom::element el;
  if (!present_ || obj_.at_key(name).get(el) != simdjson::SUCCESS || el.is_null())
    return std::nullopt;
  return el;
}

bool Args::has(std::string_view name) const {
  return get(name).has_value();
}

void Args::fail(std::string_view name, std::string_view what) {
  if (error_.empty()) error_ = fmt::format("{}{} {}", label_, name, what);
}

std::int64_t Args::integer(std::string_view name, std::int64_t def, std::int64_t lo,
                           std::int64_t hi) {
  auto el = get(name);
  if (!el) return def;
  std::int64_t v = 0;
  if (el->get_int64().get(v) != simdjson::SUCCESS || v < lo || v > hi) {
    fail(name, fmt::format("must be an integer from {} to {}", lo, hi));
    return def;
  }
  return v;
}

std::optional<std::string> Args::string(std::string_view name) {
  auto el = get(name);
  if (!el) return std::nullopt;
  std::string_view v;
  if (el->get_string().get(v) != simdjson::SUCCESS) {
    fail(name, "must be a string");
    return std::nullopt;
  }
  return std::string(v);
}

std::optional<Micros> Args::time(std::string_view name) {
  auto text = string(name);
  if (!text) return std::nullopt;
  auto t = parse_time(*text);
  if (!t) fail(name, "must be an RFC 3339 timestamp such as 2026-10-01T00:00:00Z");
  return t;
}

std::vector<std::string> Args::strings(std::string_view name) {
  std::vector<std::string> out;
  auto el = get(name);
  if (!el) return out;
  simdjson::dom::array arr;
  if (el->get_array().get(arr) != simdjson::SUCCESS) {
    fail(name, "must be an array of strings");
    return out;
  }
  for (auto item : arr) {
    std::string_view v;
    if (item.get_string().get(v) != simdjson::SUCCESS) {
      fail(name, "must be an array of strings");
      return {};
    }
    out.emplace_back(v);
  }
  return out;
}

}  // namespace upstream_sim
