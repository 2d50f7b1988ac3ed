// /control/*: the side door tests use to change the data, inject faults and read what the
// fetcher did. Never authenticated, never counted as a data request, never faulted.
#include <fmt/format.h>

#include "app.hpp"
#include "json_args.hpp"

namespace upstream_sim {

namespace {

std::string json_strings(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ',';
    out += json_quote(items[i]);
  }
  return out + ']';
}

Response bad_request(std::string_view message) {
  return error_response(http::status::bad_request, message);
}

}  // namespace

Response App::control(const Request& req, std::string_view path, std::string_view query) {
  struct Route {
    std::string_view path;
    http::verb method;
  };
  static constexpr Route routes[] = {
      {"/control/mutate", http::verb::post}, {"/control/ids", http::verb::get},
      {"/control/stats", http::verb::get},   {"/control/requests", http::verb::get},
      {"/control/faults", http::verb::post}, {"/control/reset", http::verb::post}};
  const Route* route = nullptr;
  for (const auto& r : routes)
    if (r.path == path) route = &r;
  if (!route) return error_response(http::status::not_found, fmt::format("no route for {}", path));
  if (req.method() != route->method) {
    auto res = error_response(http::status::method_not_allowed, "wrong method");
    res.set(http::field::allow, http::to_string(route->method));
    return res;
  }

  if (path == "/control/mutate") return control_mutate(req);
  if (path == "/control/faults") return control_faults(req);
  if (path == "/control/stats") return json_response(http::status::ok, stats_json());
  if (path == "/control/requests") return json_response(http::status::ok, requests_json());
  if (path == "/control/reset") {  // counters and faults, never data or tokens
    faults_.clear();
    by_status_.clear();
    token_requests_ = 0;
    log_.clear();
    return json_response(http::status::ok, R"({"ok":true})");
  }
  // /control/ids
  auto params = parse_params(query);
  auto entity =
      params && params->contains("entity") ? entity_named(params->at("entity")) : std::nullopt;
  if (!entity) return bad_request("?entity= must name an entity, e.g. clients");
  auto max = data_.max_updated_at(*entity);
  return json_response(http::status::ok, fmt::format(R"({{"ids":{},"max_updated_at":{}}})",
                                                     json_strings(data_.ids(*entity)),
                                                     max ? json_quote(format_time(*max)) : "null"));
}

// {"entity":"clients","op":"update"|"add"|"delete","count":N} or {...,"op":"delete","ids":[...]}
Response App::control_mutate(const Request& req) {
  simdjson::dom::parser parser;
  auto body = parse_object(parser, req.body());
  if (!body) return bad_request("the body is not a JSON object");
  Args args(*body);
  auto entity_name = args.string("entity");
  auto op = args.string("op").value_or("");
  auto count = static_cast<int>(args.integer("count", 0, 1, 1'000'000));
  auto ids = args.strings("ids");
  if (!args.error().empty()) return bad_request(args.error());
  auto entity = entity_name ? entity_named(*entity_name) : std::nullopt;
  if (!entity) return bad_request("\"entity\" must name an entity, e.g. clients");

  std::vector<std::string> affected;
  if (op == "delete" && args.has("ids")) {
    affected = data_.remove_ids(*entity, ids);
  } else if (count == 0) {
    return bad_request("\"count\" is required (or \"ids\" for delete)");
  } else if (op == "update") {
    affected = data_.update_oldest(*entity, count);
  } else if (op == "add") {
    affected = data_.add(*entity, count);
  } else if (op == "delete") {
    affected = data_.remove_oldest(*entity, count);
  } else {
    return bad_request("\"op\" must be update, add or delete");
  }
  return json_response(http::status::ok, fmt::format(R"({{"ids":{}}})", json_strings(affected)));
}

// {"kind":"429","count":2,"retry_after":1} and friends; see Fault in app.hpp.
Response App::control_faults(const Request& req) {
  simdjson::dom::parser parser;
  auto body = parse_object(parser, req.body());
  if (!body) return bad_request("the body is not a JSON object");
  // "kind" is documented as a string, but {"kind":429} is an easy slip: accept both.
  std::string kind;
  std::string_view text;
  std::int64_t number = 0;
  if ((*body)["kind"].get(text) == simdjson::SUCCESS)
    kind = text;
  else if ((*body)["kind"].get(number) == simdjson::SUCCESS)
    kind = std::to_string(number);
  if (!known_fault_kind(kind))
    return bad_request(
        "\"kind\" must be one of 429 500 503 slow truncate malformed "
        "graphql_error expire_tokens");
  Args args(*body);
  Fault f{kind, static_cast<int>(args.integer("count", 1, 1, 1'000'000))};
  if (args.has("retry_after"))
    f.retry_after = static_cast<int>(args.integer("retry_after", 0, 0, 86'400));
  f.delay_ms = static_cast<int>(args.integer("delay_ms", 0, 0, 600'000));
  if (!args.error().empty()) return bad_request(args.error());

  if (kind == "expire_tokens") {  // immediate, not queued
    auto n = tokens_.size();
    tokens_.clear();
    return json_response(http::status::ok, fmt::format(R"({{"expired":{}}})", n));
  }
  faults_.push_back(f);
  return json_response(http::status::ok, fmt::format(R"({{"queued":{}}})", faults_.size()));
}

std::string App::stats_json() const {
  std::int64_t total = 0;
  std::string statuses;
  for (const auto& [status, n] : by_status_) {
    total += n;
    statuses += fmt::format(R"({}"{}":{})", statuses.empty() ? "" : ",", status, n);
  }
  std::string records;
  for (Entity e : kEntities)
    records +=
        fmt::format(R"({}"{}":{})", records.empty() ? "" : ",", rest_name(e), data_.count(e));
  return fmt::format(
      R"({{"requests":{{"total":{},"by_status":{{{}}},"token":{}}},"records":{{{}}}}})", total,
      statuses, token_requests_, records);
}

std::string App::requests_json() const {
  std::string out = R"({"requests":[)";
  bool first = true;
  for (const auto& r : log_) {
    out += fmt::format(R"({}{{"t_ms":{},"path":{},"status":{}}})", first ? "" : ",", r.t_ms,
                       json_quote(r.path), r.status);
    first = false;
  }
  return out + "]}";
}

}  // namespace upstream_sim
