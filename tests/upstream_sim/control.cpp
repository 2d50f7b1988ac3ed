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
      {"/control/faults", http::verb::post}, {"/control/reset", http::verb::post},
      {"/control/churn", http::verb::get},   {"/control/churn", http::verb::post},
      {"/control/dump", http::verb::get},    {"/control/fault_rate", http::verb::post}};
  const Route* route = nullptr;
  bool known = false;
  for (const auto& r : routes) {
    if (r.path != path) continue;
    known = true;
    if (req.method() == r.method) route = &r;
  }
  if (!known) return error_response(http::status::not_found, fmt::format("no route for {}", path));
  if (!route) {
    auto res = error_response(http::status::method_not_allowed, "wrong method");
    std::string allow;
    for (const auto& r : routes)
      if (r.path == path)
        allow += (allow.empty() ? "" : ", ") + std::string(http::to_string(r.method));
    res.set(http::field::allow, allow);
    return res;
  }

  if (path == "/control/mutate") return control_mutate(req);
  if (path == "/control/faults") return control_faults(req);
  if (path == "/control/churn")
    return req.method() == http::verb::post ? control_churn(req)
                                            : json_response(http::status::ok, churn_json());
  if (path == "/control/fault_rate") return control_fault_rate(req);
  if (path == "/control/dump") {  // JSON lines, not one JSON document
    auto res = json_response(http::status::ok, data_.dump());
    res.set(http::field::content_type, "application/x-ndjson");
    return res;
  }
  if (path == "/control/stats") return json_response(http::status::ok, stats_json());
  if (path == "/control/requests") return json_response(http::status::ok, requests_json());
  if (path == "/control/reset") {  // counters and faults, never data or tokens
    faults_.clear();
    by_status_.clear();
    token_requests_ = 0;
    in_flight_max_ = in_flight_;
    log_.clear();
    random_faults_.clear();
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

// {"per_second":10,"max":2000}: start, change or (per_second 0) stop the churn; answers its
// state, as GET does: {"per_second","max","updated","added","deleted","records"}.
Response App::control_churn(const Request& req) {
  simdjson::dom::parser parser;
  auto body = parse_object(parser, req.body());
  if (!body) return bad_request("the body is not a JSON object");
  double per_second = 0;
  simdjson::dom::element rate;
  if ((*body)["per_second"].get(rate) != simdjson::SUCCESS ||
      rate.get(per_second) != simdjson::SUCCESS || per_second < 0 || per_second > 100'000)
    return bad_request("\"per_second\" must be a number from 0 to 100000");
  Args args(*body);
  auto max = args.integer("max", 0, 0, 1'000'000'000);
  if (!args.error().empty()) return bad_request(args.error());
  set_churn(per_second, max);
  return json_response(http::status::ok, churn_json());
}

// {"percent":20,"kinds":["500","slow"],"retry_after":1,"delay_ms":3000}: random faults from
// now on (percent 0 stops them; absent members keep their value); answers the setting.
Response App::control_fault_rate(const Request& req) {
  simdjson::dom::parser parser;
  auto body = parse_object(parser, req.body());
  if (!body) return bad_request("the body is not a JSON object");
  RandomFaults rf = opt_.random_faults;
  simdjson::dom::element el;
  if ((*body)["percent"].get(el) == simdjson::SUCCESS &&
      (el.get(rf.percent) != simdjson::SUCCESS || rf.percent < 0 || rf.percent > 100))
    return bad_request("\"percent\" must be a number from 0 to 100");
  Args args(*body);
  if (args.has("kinds")) rf.kinds = args.strings("kinds");
  rf.retry_after = static_cast<int>(args.integer("retry_after", rf.retry_after, 0, 86'400));
  rf.delay_ms = static_cast<int>(args.integer("delay_ms", rf.delay_ms, 0, 600'000));
  if (!args.error().empty()) return bad_request(args.error());
  for (const auto& k : rf.kinds)
    if (!known_fault_kind(k) || k == "expire_tokens")
      return bad_request(fmt::format("\"kinds\": {} is not a per-request fault", k));
  opt_.random_faults = rf;
  return json_response(http::status::ok, fault_rate_json());
}

std::string App::fault_rate_json() const {
  const auto& rf = opt_.random_faults;
  std::string injected;
  for (const auto& [kind, n] : random_faults_)
    injected += fmt::format(R"({}"{}":{})", injected.empty() ? "" : ",", kind, n);
  return fmt::format(
      R"({{"percent":{},"kinds":{},"retry_after":{},"delay_ms":{},"injected":{{{}}}}})", rf.percent,
      json_strings(rf.kinds), rf.retry_after, rf.delay_ms, injected);
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
      R"({{"requests":{{"total":{},"by_status":{{{}}},"token":{},"in_flight_max":{}}},)"
      R"("records":{{{}}},"fault_rate":{}}})",
      total, statuses, token_requests_, in_flight_max_, records, fault_rate_json());
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
