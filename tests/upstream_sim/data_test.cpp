// Protects the simulator's data set and listings: the same seed gives the same records; every
// pagination style (Relay, page number, REST _page with Link, REST offset) returns each record
// exactly once in (updatedAt, id) order and agrees with /control/ids; since/until bounds;
// escaping of awkward texts; the orphan references the reconciler must cope with.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include <fmt/format.h>

#include "harness.hpp"

using namespace sim_test;

namespace {

std::map<std::string, std::int64_t> record_counts(Client& c) {
  simdjson::dom::parser parser;
  auto doc = parse(parser, c.get("/control/stats").body);
  std::map<std::string, std::int64_t> out;
  for (auto [key, value] : doc["records"].get_object()) out[std::string(key)] = value.get_int64();
  return out;
}

}  // namespace

TEST_CASE("the same seed gives identical records and another seed gives other ids") {
  Sim a({"--seed", "7"}), b({"--seed", "7"}), other({"--seed", "8"});
  Client ca(a.port()), cb(b.port()), co(other.port());
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto ra = rest_offset_walk(ca, e, 1000).rows;
    auto rb = rest_offset_walk(cb, e, 1000).rows;
    REQUIRE(ra.size() == rb.size());
    for (std::size_t i = 0; i < ra.size(); ++i) CHECK(ra[i].json == rb[i].json);
    auto ids_a = ids_of(ra);
    std::set<std::string> mine(ids_a.begin(), ids_a.end());
    for (const auto& id : ids_of(rest_offset_walk(co, e, 1000).rows)) CHECK(!mine.contains(id));
  }
}

TEST_CASE("entity counts follow --size") {
  Sim small, big({"--size", "200"});
  Client cs(small.port()), cb(big.port());
  CHECK(record_counts(cs) == std::map<std::string, std::int64_t>{{"clients", 100},
                                                                 {"pianos", 200},
                                                                 {"users", 5},
                                                                 {"timeline_entries", 500},
                                                                 {"invoices", 100}});
  CHECK(record_counts(cb) == std::map<std::string, std::int64_t>{{"clients", 200},
                                                                 {"pianos", 400},
                                                                 {"users", 10},
                                                                 {"timeline_entries", 1000},
                                                                 {"invoices", 200}});
}

TEST_CASE("records have the documented fields ids and timestamps") {
  Sim sim;
  Client c(sim.port());
  const std::map<std::string, std::vector<std::string>> shapes = {
      {"clients", {"id", "firstName", "lastName", "email", "phone", "updatedAt"}},
      {"pianos", {"id", "make", "model", "serialNumber", "client", "updatedAt"}},
      {"users", {"id", "firstName", "lastName", "email", "role", "updatedAt"}},
      {"timeline_entries",
       {"id", "type", "occurredAt", "summary", "piano", "user", "client", "updatedAt"}},
      {"invoices", {"id", "number", "total", "currency", "client", "issuedAt", "updatedAt"}}};
  const std::map<std::string, std::string> prefixes = {{"clients", "cln_"},
                                                       {"pianos", "pno_"},
                                                       {"users", "usr_"},
                                                       {"timeline_entries", "tme_"},
                                                       {"invoices", "inv_"}};
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto rows = rest_offset_walk(c, e, 1000).rows;
    REQUIRE(!rows.empty());
    for (const auto& r : rows) {
      CAPTURE(r.json);
      simdjson::dom::parser parser;
      std::vector<std::string> keys;
      for (auto [key, value] : parse(parser, r.json).get_object()) keys.emplace_back(key);
      CHECK(keys == shapes.at(e.rest));
      CHECK(is_id(r.id, prefixes.at(e.rest)));
      CHECK(matches(r.updated_at, "dddd-dd-ddTdd:dd:dd.dddZ"));
      // Within the 90 days before the fixed epoch 2026-11-01T00:00:00Z.
      CHECK(r.updated_at >= "2026-08-03T00:00:00.000Z");
      CHECK(r.updated_at < "2026-11-01T00:00:00.000Z");
    }
  }
}

TEST_CASE("invoice totals are JSON numbers with exactly two decimals") {
  Sim sim;
  Client c(sim.port());
  auto body = c.get("/rest/invoices?limit=1000").body;  // raw text: a parser would drop zeros
  int totals = 0;
  for (auto at = body.find(R"("total":)"); at != std::string::npos;
       at = body.find(R"("total":)", at + 1)) {
    auto value = body.substr(at + 8, body.find(',', at) - at - 8);
    CAPTURE(value);
    REQUIRE(value.size() >= 4);
    CHECK(matches(value, std::string(value.size() - 3, 'd') + ".dd"));
    ++totals;
  }
  CHECK(totals == 100);
}

TEST_CASE("many records share an updatedAt so page boundaries fall inside runs") {
  Sim sim;
  Client c(sim.port());
  for (const auto& e : kEntities) {
    if (e.rest == "users") continue;  // five technicians are too few for runs
    CAPTURE(e.rest);
    auto rows = rest_offset_walk(c, e, 1000).rows;
    std::map<std::string, int> runs;
    int whole_seconds = 0;
    for (const auto& r : rows) {
      ++runs[r.updated_at];
      whole_seconds += r.updated_at.ends_with(".000Z");
    }
    CHECK(rows.size() - runs.size() >= rows.size() / 10);  // >= 10% repeat an earlier value
    CHECK(std::any_of(runs.begin(), runs.end(), [](const auto& kv) { return kv.second >= 4; }));
    CHECK(whole_seconds > 0);
  }
}

TEST_CASE("Relay pagination returns every record exactly once in updatedAt id order") {
  Sim sim;
  Client c(sim.port());
  for (const auto& e : kEntities) {
    auto expected = control_ids(c, e.rest).ids;
    for (int first : {1, 7, 100, 1000}) {
      CAPTURE(e.rest);
      CAPTURE(first);
      auto w = relay_walk(c, e, first);
      CHECK(in_listing_order(w.rows));  // strictly increasing: no record twice
      CHECK(sorted(ids_of(w.rows)) == expected);
      CHECK(w.pages == std::max<int>(1, static_cast<int>((expected.size() + first - 1) / first)));
    }
  }
}

TEST_CASE("page-number pagination returns the control ids and the total count") {
  Sim sim;
  Client c(sim.port());
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto expected = control_ids(c, e.rest).ids;
    auto w = page_walk(c, e, 9);
    CHECK(w.total == static_cast<std::int64_t>(expected.size()));
    CHECK(in_listing_order(w.rows));
    CHECK(sorted(ids_of(w.rows)) == expected);
  }
}

TEST_CASE("REST _page style follows Link headers to the control ids") {
  Sim sim;
  Client c(sim.port());
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto expected = control_ids(c, e.rest).ids;
    auto w = rest_page_walk(c, e, 13);
    CHECK(w.total == static_cast<std::int64_t>(expected.size()));
    CHECK(w.pages == static_cast<int>((expected.size() + 12) / 13));
    CHECK(in_listing_order(w.rows));
    CHECK(sorted(ids_of(w.rows)) == expected);
  }
}

TEST_CASE("REST offset style returns the control ids with X-Total-Count") {
  Sim sim;
  Client c(sim.port());
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto expected = control_ids(c, e.rest).ids;
    auto w = rest_offset_walk(c, e, 11);
    CHECK(w.total == static_cast<std::int64_t>(expected.size()));
    CHECK(in_listing_order(w.rows));
    CHECK(sorted(ids_of(w.rows)) == expected);
  }
}

TEST_CASE("since and until select updatedAt from since up to but excluding until") {
  Sim sim;
  Client c(sim.port());
  const auto& e = entity("timeline_entries");
  auto all = rest_offset_walk(c, e, 1000).rows;
  // Bounds on values that several records share: an off-by-one at a boundary shows.
  std::vector<std::string> shared;
  for (std::size_t i = 1; i < all.size(); ++i)
    if (all[i].updated_at == all[i - 1].updated_at &&
        (shared.empty() || shared.back() != all[i].updated_at))
      shared.push_back(all[i].updated_at);
  REQUIRE(shared.size() >= 4);
  std::string since = shared[shared.size() / 4], until = shared[3 * shared.size() / 4];
  std::vector<std::string> expected;
  for (const auto& r : all)
    if (r.updated_at >= since && r.updated_at < until) expected.push_back(r.id);
  REQUIRE(expected.size() > 10);

  auto vars = fmt::format(R"("since":"{}","until":"{}")", since, until);
  CHECK(ids_of(relay_walk(c, e, 17, vars).rows) == expected);
  auto pw = page_walk(c, e, 17, vars);
  CHECK(ids_of(pw.rows) == expected);
  CHECK(pw.total == static_cast<std::int64_t>(expected.size()));
  auto query = fmt::format("&updated_since={}&updated_until={}", since, until);
  auto rp = rest_page_walk(c, e, 17, query);  // the Link header must carry the filters on
  CHECK(ids_of(rp.rows) == expected);
  CHECK(rp.total == static_cast<std::int64_t>(expected.size()));
  CHECK(ids_of(rest_offset_walk(c, e, 17, query).rows) == expected);

  // The same instants with microseconds and with a +02:00 offset (URL-encoded).
  auto micros = [](const std::string& t) { return t.substr(0, 23) + "000Z"; };
  auto plus2 = [](const std::string& t) {  // fine for these dates: none is near midnight UTC
    int hour = std::stoi(t.substr(11, 2)) + 2;
    return hour > 23 ? std::string{}
                     : fmt::format("{}{:02}{}%2B02:00", t.substr(0, 11), hour, t.substr(13, 10));
  };
  CHECK(ids_of(relay_walk(c, e, 100,
                          fmt::format(R"("since":"{}","until":"{}")", micros(since), micros(until)))
                   .rows) == expected);
  if (!plus2(since).empty() && !plus2(until).empty())
    CHECK(ids_of(rest_offset_walk(
                     c, e, 1000,
                     fmt::format("&updated_since={}&updated_until={}", plus2(since), plus2(until)))
                     .rows) == expected);
}

TEST_CASE("awkward summaries stay valid JSON and arrive byte for byte") {
  Sim sim;
  Client c(sim.port());
  std::set<std::string> summaries;
  for (const auto& r : rest_offset_walk(c, entity("timeline_entries"), 1000).rows) {
    simdjson::dom::parser parser;
    summaries.insert(str(parse(parser, r.json)["summary"].value()));
  }
  auto any = [&](std::string_view needle) {
    return std::any_of(summaries.begin(), summaries.end(),
                       [&](const std::string& s) { return s.find(needle) != std::string::npos; });
  };
  CHECK(any("\""));
  CHECK(any("\\"));
  CHECK(any("\n"));
  CHECK(any("\t"));
  CHECK(any("\x07"));
  CHECK(any("é"));
  CHECK(any("ü"));
  CHECK(any("日本"));
}

TEST_CASE("about 2 percent of timeline entries name a piano that exists nowhere") {
  Sim sim;
  Client c(sim.port());
  auto pianos = control_ids(c, "pianos").ids;
  std::set<std::string> known(pianos.begin(), pianos.end());
  auto entries = rest_offset_walk(c, entity("timeline_entries"), 1000).rows;
  int orphans = 0;
  for (const auto& r : entries) {
    simdjson::dom::parser parser;
    auto piano = str(parse(parser, r.json)["piano"]["id"].value());
    CHECK(is_id(piano, "pno_"));
    orphans += !known.contains(piano);
  }
  CHECK(orphans >= 2);
  CHECK(orphans <= static_cast<int>(entries.size()) / 20);
}

TEST_CASE("about 5 percent of timeline entries name a user updated after the entry") {
  Sim sim;
  Client c(sim.port());
  std::map<std::string, std::string> user_time;
  for (const auto& r : rest_offset_walk(c, entity("users"), 1000).rows)
    user_time[r.id] = r.updated_at;
  auto entries = rest_offset_walk(c, entity("timeline_entries"), 1000).rows;
  int later = 0;
  for (const auto& r : entries) {
    simdjson::dom::parser parser;
    auto user = str(parse(parser, r.json)["user"]["id"].value());
    REQUIRE(user_time.contains(user));  // users are never orphans, only late
    later += user_time[user] > r.updated_at;
  }
  CHECK(later >= static_cast<int>(entries.size()) / 50);  // 2% .. 10%
  CHECK(later <= static_cast<int>(entries.size()) / 10);
}
