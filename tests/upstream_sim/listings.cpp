// Walkers that read a whole listing the way a fetcher would, one per pagination style.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <tuple>

#include <fmt/format.h>

#include "harness.hpp"

namespace sim_test {

const std::vector<Entity> kEntities = {{"clients", "allClients"},
                                       {"pianos", "allPianos"},
                                       {"users", "allUsers"},
                                       {"timeline_entries", "allTimelineEntries"},
                                       {"invoices", "allInvoices"}};

const Entity& entity(const std::string& rest) {
  for (const auto& e : kEntities)
    if (e.rest == rest) return e;
  FAIL("unknown entity ", rest);
  throw;  // unreachable: FAIL throws
}

namespace {

constexpr int kMaxPages = 20'000;  // a walk that never ends is a bug, not a slow test

Row row(simdjson::dom::element node) {
  return {str(node["id"]), str(node["updatedAt"]), simdjson::minify(node)};
}

std::vector<Row> rows(simdjson::dom::element array) {
  std::vector<Row> out;
  simdjson::dom::array arr;
  REQUIRE(array.get_array().get(arr) == simdjson::SUCCESS);
  for (auto node : arr) out.push_back(row(node));
  return out;
}

std::string path_of(const std::string& url, unsigned short port) {
  std::string origin = fmt::format("http://127.0.0.1:{}", port);
  REQUIRE_MESSAGE(url.starts_with(origin), "Link URL ", url);
  return url.substr(origin.size());
}

}  // namespace

Response graphql(Client& c, const Entity& e, const std::string& vars, const Headers& headers) {
  // The selection is what a fetcher would send; the simulator only looks for the field names.
  std::string query = fmt::format(
      "query Q {{ {0} {{ pageInfo {{ hasNextPage endCursor }} edges {{ node {{ id updatedAt }} }} "
      "}}"
      " _{0}Meta {{ count }} }}",
      e.field);
  return c.post("/graphql", fmt::format(R"({{"query":"{}","variables":{{{}}}}})", query, vars),
                headers);
}

Walk relay_walk(Client& c, const Entity& e, int first, const std::string& extra_vars,
                const std::string& start_after) {
  Walk w;
  std::string after = start_after.empty() ? "null" : "\"" + start_after + "\"";
  while (w.pages < kMaxPages) {
    auto vars = fmt::format(R"("first":{},"after":{}{}{})", first, after,
                            extra_vars.empty() ? "" : ",", extra_vars);
    auto res = graphql(c, e, vars);
    REQUIRE(res.status == 200);
    simdjson::dom::parser parser;
    auto conn = parse(parser, res.body)["data"][e.field];
    REQUIRE_MESSAGE(conn.error() == simdjson::SUCCESS, res.body.substr(0, 300));
    simdjson::dom::array edges;
    REQUIRE(conn["edges"].get(edges) == simdjson::SUCCESS);
    for (auto edge : edges) w.rows.push_back(row(edge["node"].value()));
    ++w.pages;
    bool more = false;
    REQUIRE(conn["pageInfo"]["hasNextPage"].get(more) == simdjson::SUCCESS);
    if (!more) return w;
    after = fmt::format("\"{}\"", str(conn["pageInfo"]["endCursor"].value()));
  }
  FAIL("relay walk did not end");
  return w;
}

Walk page_walk(Client& c, const Entity& e, int per_page, const std::string& extra_vars) {
  Walk w;
  for (int page = 0; page < kMaxPages; ++page) {
    auto vars = fmt::format(R"("page":{},"perPage":{}{}{})", page, per_page,
                            extra_vars.empty() ? "" : ",", extra_vars);
    auto res = graphql(c, e, vars);
    REQUIRE(res.status == 200);
    simdjson::dom::parser parser;
    auto data = parse(parser, res.body)["data"];
    REQUIRE_MESSAGE(data[e.field].error() == simdjson::SUCCESS, res.body.substr(0, 300));
    auto got = rows(data[e.field].value());
    std::int64_t count = 0;
    REQUIRE(data["_" + e.field + "Meta"]["count"].get(count) == simdjson::SUCCESS);
    w.total = count;
    ++w.pages;
    for (auto& r : got) w.rows.push_back(std::move(r));
    if (static_cast<std::int64_t>(page + 1) * per_page >= count) return w;
  }
  FAIL("page walk did not end");
  return w;
}

Walk rest_page_walk(Client& c, const Entity& e, int limit, const std::string& extra_query) {
  Walk w;
  std::string target = fmt::format("/rest/{}?_page=1&_limit={}{}", e.rest, limit, extra_query);
  while (w.pages < kMaxPages) {
    auto res = c.get(target);
    REQUIRE_MESSAGE(res.status == 200, target, " -> ", res.body);
    simdjson::dom::parser parser;
    for (auto& r : rows(parse(parser, res.body))) w.rows.push_back(std::move(r));
    ++w.pages;
    w.total = std::stoll(res.header("x-total-count"));
    auto link = res.header("link");
    if (link.empty()) return w;
    REQUIRE(link.ends_with(">; rel=\"next\""));
    target = path_of(link.substr(1, link.find('>') - 1), c.port());
  }
  FAIL("REST page walk did not end");
  return w;
}

Walk rest_offset_walk(Client& c, const Entity& e, int limit, const std::string& extra_query) {
  Walk w;
  for (std::int64_t offset = 0; w.pages < kMaxPages; offset += limit) {
    auto res =
        c.get(fmt::format("/rest/{}?offset={}&limit={}{}", e.rest, offset, limit, extra_query));
    REQUIRE(res.status == 200);
    CHECK(res.header("link").empty());
    simdjson::dom::parser parser;
    for (auto& r : rows(parse(parser, res.body))) w.rows.push_back(std::move(r));
    ++w.pages;
    w.total = std::stoll(res.header("x-total-count"));
    if (offset + limit >= w.total) return w;
  }
  FAIL("REST offset walk did not end");
  return w;
}

ControlIds control_ids(Client& c, const std::string& entity) {
  auto res = c.get("/control/ids?entity=" + entity);
  REQUIRE(res.status == 200);
  simdjson::dom::parser parser;
  auto doc = parse(parser, res.body);
  ControlIds out;
  for (auto id : doc["ids"].get_array()) out.ids.push_back(str(id));
  out.max_updated_at = str(doc["max_updated_at"].value());
  return out;
}

bool matches(std::string_view s, std::string_view pattern) {
  if (s.size() != pattern.size()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    bool ok = pattern[i] == 'd'   ? std::isdigit(c) != 0
              : pattern[i] == 'a' ? std::isalnum(c) != 0
                                  : s[i] == pattern[i];
    if (!ok) return false;
  }
  return true;
}

bool is_id(std::string_view s, std::string_view prefix) {
  return s.starts_with(prefix) && matches(s.substr(prefix.size()), "aaaaaaaaaaaaaaaa");
}

std::vector<std::string> ids_of(const std::vector<Row>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.id);
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

bool in_listing_order(const std::vector<Row>& rows) {
  // RFC 3339 UTC with fixed millisecond width sorts as text.
  for (std::size_t i = 1; i < rows.size(); ++i)
    if (std::tie(rows[i - 1].updated_at, rows[i - 1].id) >=
        std::tie(rows[i].updated_at, rows[i].id))
      return false;
  return true;
}

}  // namespace sim_test
