// The two data APIs a fetcher can be configured for, over the same sorted listings:
//   POST /graphql       Relay cursors (first/after) or page numbers (page/perPage + _allXMeta)
//   GET  /rest/<entity> _page/_limit with Link headers, or offset/limit; X-Total-Count always
// Both filter on since <= updatedAt < until and render records with the same to_json.
#include <fmt/format.h>

#include "app.hpp"
#include "json_args.hpp"

namespace upstream_sim {

namespace {

constexpr std::int64_t kMaxLimit = 1000;

// GraphQL reports its own errors with HTTP 200, as real servers do: a fetcher must look at
// "errors" and not only at the status.
Response graphql_error(std::string_view message) {
  return json_response(
      http::status::ok,
      fmt::format(R"({{"errors":[{{"message":{}}}],"data":null}})", json_quote(message)));
}

// The root field is found by name in the query text: the simulator does not parse GraphQL,
// it only has to answer the handful of queries a fetcher sends.
std::optional<Entity> root_field(std::string_view query) {
  std::optional<Entity> found;
  std::size_t found_at = std::string_view::npos;
  for (Entity e : kEntities) {
    auto at = query.find(graphql_field(e));
    if (at < found_at) {
      found = e;
      found_at = at;
    }
  }
  return found;
}

// Cursors are opaque to clients, but are really base64("<updatedAt>|<id>"): a position in the
// (updatedAt, id) order rather than an index, so they survive records moving between pages.
std::string make_cursor(const Record& r) {
  return base64_encode(format_time(r.updated_at) + "|" + r.id);
}

std::optional<Key> read_cursor(std::string_view cursor) {
  auto text = base64_decode(cursor);
  if (!text) return std::nullopt;
  auto bar = text->find('|');
  if (bar == std::string::npos || bar + 1 == text->size()) return std::nullopt;
  auto t = parse_time(std::string_view(*text).substr(0, bar));
  if (!t) return std::nullopt;
  return Key{*t, text->substr(bar + 1)};
}

std::string json_list(const std::vector<const Record*>& records, std::string_view before = "",
                      std::string_view after = "") {
  std::string out = "[";
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (i > 0) out += ',';
    out += before;
    out += to_json(*records[i]);
    out += after;
  }
  out += ']';
  return out;
}

// {"data":{"allX":[...],"_allXMeta":{"count":N}}}: page is 0-based, N counts the filter.
Response page_number_style(const Dataset& data, Entity entity, std::string_view query, Args& vars) {
  Filter filter{vars.time("since"), vars.time("until")};
  auto page = vars.integer("page", 0, 0, 1'000'000'000);
  auto per_page = vars.integer("perPage", 100, 1, kMaxLimit);
  if (!vars.error().empty()) return graphql_error(vars.error());
  auto s = data.at_offset(entity, filter, static_cast<std::size_t>(page * per_page),
                          static_cast<std::size_t>(per_page));
  std::string_view field = graphql_field(entity);
  // Like a real server, the count is only there when the query asks for it.
  std::string meta = fmt::format("_{}Meta", field);
  std::string count = query.find(meta) == std::string_view::npos
                          ? ""
                          : fmt::format(R"(,"{}":{{"count":{}}})", meta, s.total);
  return json_response(http::status::ok, fmt::format(R"({{"data":{{"{}":{}{}}}}})", field,
                                                     json_list(s.records), count));
}

// {"data":{"allX":{"pageInfo":{"hasNextPage":B,"endCursor":C},"edges":[{"node":{...}}]}}}
Response relay_style(const Dataset& data, Entity entity, Args& vars) {
  Filter filter{vars.time("since"), vars.time("until")};
  auto first = vars.integer("first", 100, 0, kMaxLimit);
  std::optional<Key> after;
  if (auto cursor = vars.string("after")) {
    after = read_cursor(*cursor);
    if (!after) vars.fail("after", "is not a cursor this server issued");
  }
  if (!vars.error().empty()) return graphql_error(vars.error());
  auto s = data.after_key(entity, filter, after, static_cast<std::size_t>(first));
  std::string end_cursor = s.records.empty() ? "null" : json_quote(make_cursor(*s.records.back()));
  return json_response(
      http::status::ok,
      fmt::format(
          R"({{"data":{{"{}":{{"pageInfo":{{"hasNextPage":{},"endCursor":{}}},"edges":{}}}}}}})",
          graphql_field(entity), s.more, end_cursor, json_list(s.records, R"({"node":)", "}")));
}

}  // namespace

Response App::graphql(const Request& req) {
  if (req.method() != http::verb::post) {
    auto res = error_response(http::status::method_not_allowed, "use POST for /graphql");
    res.set(http::field::allow, "POST");
    return res;
  }
  simdjson::dom::parser parser;
  auto body = parse_object(parser, req.body());
  if (!body)
    return json_response(http::status::bad_request,
                         R"({"errors":[{"message":"the body is not a JSON object"}],"data":null})");
  Args top(*body);
  auto query = top.string("query");
  if (!query) return graphql_error("the body has no \"query\" string");
  auto entity = root_field(*query);
  if (!entity)
    return graphql_error(
        "Cannot query a field on type \"Query\": expected one of allClients, "
        "allPianos, allUsers, allTimelineEntries, allInvoices");

  Args vars;
  simdjson::dom::element v;
  if ((*body)["variables"].get(v) == simdjson::SUCCESS && !v.is_null()) {
    simdjson::dom::object obj;
    if (v.get_object().get(obj) != simdjson::SUCCESS)
      return graphql_error("\"variables\" must be an object");
    vars = Args(obj, "$");
  }
  if (vars.has("page")) return page_number_style(data_, *entity, *query, vars);
  return relay_style(data_, *entity, vars);
}

Response App::rest(const Request& req, std::string_view path, std::string_view query) {
  auto entity = entity_named(path.substr(std::string_view("/rest/").size()));
  if (!entity) return error_response(http::status::not_found, fmt::format("no entity at {}", path));
  if (req.method() != http::verb::get) {
    auto res = error_response(http::status::method_not_allowed, "use GET for /rest/*");
    res.set(http::field::allow, "GET");
    return res;
  }
  auto params = parse_params(query);
  if (!params) return error_response(http::status::bad_request, "malformed query string");
  auto bad = [](std::string_view what) { return error_response(http::status::bad_request, what); };

  Filter filter;
  for (auto [name, bound] :
       {std::pair{"updated_since", &filter.since}, std::pair{"updated_until", &filter.until}}) {
    if (!params->contains(name)) continue;
    *bound = parse_time(params->at(name));
    // An unencoded '+' in an offset arrives as a space: the usual client bug, so say so.
    if (!*bound)
      return bad(fmt::format("{} must be an RFC 3339 timestamp (URL-encode '+' as %2B)", name));
  }
  auto int_param = [&](const char* name, std::int64_t def, std::int64_t lo,
                       std::int64_t hi) -> std::optional<std::int64_t> {
    if (!params->contains(name)) return def;
    auto v = parse_int(params->at(name));
    if (!v || *v < lo || *v > hi) return std::nullopt;
    return v;
  };

  bool page_style = params->contains("_page") || params->contains("_limit");
  if (page_style && (params->contains("offset") || params->contains("limit")))
    return bad("use either _page and _limit or offset and limit");
  std::optional<std::int64_t> page, limit, offset;
  if (page_style) {
    page = int_param("_page", 1, 1, 1'000'000'000);
    limit = int_param("_limit", 100, 1, kMaxLimit);
    if (!page || !limit) return bad(fmt::format("_page must be >= 1, _limit 1 to {}", kMaxLimit));
    offset = (*page - 1) * *limit;
  } else {
    offset = int_param("offset", 0, 0, 1'000'000'000'000);
    limit = int_param("limit", 100, 1, kMaxLimit);
    if (!offset || !limit) return bad(fmt::format("offset must be >= 0, limit 1 to {}", kMaxLimit));
  }

  auto s = data_.at_offset(*entity, filter, static_cast<std::size_t>(*offset),
                           static_cast<std::size_t>(*limit));
  auto res = json_response(http::status::ok, json_list(s.records));
  res.set("X-Total-Count", std::to_string(s.total));
  if (page_style && s.more) {
    std::string next = fmt::format("http://127.0.0.1:{}/rest/{}?_page={}&_limit={}", port_,
                                   rest_name(*entity), *page + 1, *limit);
    for (const char* name : {"updated_since", "updated_until"})
      if (params->contains(name)) next += fmt::format("&{}={}", name, url_encode(params->at(name)));
    res.set(http::field::link, fmt::format("<{}>; rel=\"next\"", next));
  }
  return res;
}

}  // namespace upstream_sim
