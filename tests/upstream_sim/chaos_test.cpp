// Protects what tests/chaos/ and tests/soak/ stand on: the churn changes records in the
// background and stops when told, the dump is the data set exactly as listings show it (the
// truth a mirror is compared with), --bad-records breaks records in each documented way and
// names them in the dump, and --fault-rate / /control/fault_rate fail the share of data
// requests asked for.
#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "harness.hpp"

using namespace sim_test;
using namespace std::chrono;

namespace {

struct DumpLine {
  std::string entity, id, bad, record;  // record: minified; id empty for a null id
  std::int64_t revisions = 0;
};

std::vector<DumpLine> dump(Client& c) {
  auto res = c.get("/control/dump");
  REQUIRE(res.status == 200);
  CHECK(res.header("content-type") == "application/x-ndjson");
  std::vector<DumpLine> out;
  std::istringstream in(res.body);
  std::string line;
  while (std::getline(in, line)) {
    simdjson::dom::parser parser;
    auto el = parse(parser, line);
    DumpLine d;
    d.entity = str(el["entity"].value());
    if (!el["id"].is_null()) d.id = str(el["id"].value());
    std::string_view bad;
    if (el["bad"].get(bad) == simdjson::SUCCESS) d.bad = bad;
    simdjson::dom::element rec;
    if (el["record"].get(rec) == simdjson::SUCCESS) d.record = simdjson::minify(rec);
    std::int64_t rev = 0;
    if (el["revisions"].get(rev) == simdjson::SUCCESS) d.revisions = rev;
    out.push_back(std::move(d));
  }
  return out;
}

std::int64_t churn_field(Client& c, const char* field) {
  simdjson::dom::parser parser;
  return parse(parser, c.get("/control/churn").body)[field].get_int64().value();
}

// Polls `pred` every 20 ms for up to 10 s.
bool within_10s(const std::function<bool()>& pred) {
  for (auto end = steady_clock::now() + seconds(10); steady_clock::now() < end;) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return pred();
}

}  // namespace

TEST_CASE("dump lists every record exactly as the listings show it with its revisions") {
  Sim sim;
  Client c(sim.port());
  auto lines = dump(c);
  std::size_t total = 0;
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto rows = relay_walk(c, e, 1000).rows;
    std::map<std::string, std::string> listed;
    for (const auto& r : rows) listed[r.id] = r.json;
    std::size_t n = 0;
    for (const auto& d : lines) {
      if (d.entity != e.rest) continue;
      ++n;
      CHECK(d.bad.empty());
      CHECK(d.revisions == 0);
      CHECK(listed.at(d.id) == d.record);
    }
    CHECK(n == rows.size());
    total += n;
  }
  CHECK(total == lines.size());

  auto res = c.post("/control/mutate", R"({"entity":"users","op":"update","count":1})");
  REQUIRE(res.status == 200);
  auto updated = dump(c);
  std::int64_t revised = 0;
  for (const auto& d : updated) revised += d.revisions;
  CHECK(revised == 1);
}

TEST_CASE("churn changes records in the background until max and stops at rate 0") {
  Sim sim;
  Client c(sim.port());
  auto before = dump(c).size();
  auto res = c.post("/control/churn", R"({"per_second":500,"max":40})");
  REQUIRE_MESSAGE(res.status == 200, res.body);
  REQUIRE(within_10s([&] {
    return churn_field(c, "updated") + churn_field(c, "added") + churn_field(c, "deleted") == 40;
  }));
  auto added = churn_field(c, "added"), deleted = churn_field(c, "deleted");
  CHECK(churn_field(c, "updated") > 0);  // 60 % of 40: never all adds and deletes
  CHECK(churn_field(c, "records") == static_cast<std::int64_t>(before) + added - deleted);
  auto lines = dump(c);
  CHECK(lines.size() == before + static_cast<std::size_t>(added - deleted));
  std::int64_t revisions = 0;
  for (const auto& d : lines) revisions += d.revisions;
  CHECK(revisions <= churn_field(c, "updated"));  // a deleted record takes its revisions along

  // max reached: nothing more changes; then a rate without max, then 0 stops it.
  CHECK(c.post("/control/churn", R"({"per_second":200})").status == 200);
  REQUIRE(within_10s([&] {
    return churn_field(c, "updated") + churn_field(c, "added") + churn_field(c, "deleted") > 45;
  }));
  res = c.post("/control/churn", R"({"per_second":0})");
  REQUIRE(res.status == 200);
  simdjson::dom::parser parser;
  auto stopped = parse(parser, res.body);
  auto done = stopped["updated"].get_int64().value() + stopped["added"].get_int64().value() +
              stopped["deleted"].get_int64().value();
  std::this_thread::sleep_for(milliseconds(200));
  CHECK(churn_field(c, "updated") + churn_field(c, "added") + churn_field(c, "deleted") == done);
  for (const char* body : {R"({"per_second":-1})", R"({"per_second":"fast"})", R"({})"})
    CHECK(c.post("/control/churn", body).status == 400);
}

TEST_CASE("bad records are broken in every documented way and named in the dump") {
  Sim sim({"--size", "200", "--bad-records", "20"});
  Client c(sim.port());
  auto lines = dump(c);
  std::set<std::string> kinds;
  std::map<std::string, int> missing_id;  // by entity
  for (const auto& d : lines) {
    if (d.bad.empty()) continue;
    kinds.insert(d.bad);
    CHECK(d.record.empty());  // a bad record's text is never in the dump
    if (d.bad == "missing_id") {
      CHECK(d.id.empty());
      ++missing_id[d.entity];
    }
  }
  CHECK(kinds == std::set<std::string>{"bad_time", "deep_nesting", "duplicate_id", "huge_number",
                                       "huge_string", "invalid_utf8", "missing_id", "nul_char",
                                       "sql_string", "wrong_type"});
  // The REST listing of timeline entries: broken bytes, ids shown twice, records without id.
  // Read in pages of 20 (a client's body limit is a few MB; each huge string is 1 MiB).
  std::string body;
  for (int offset = 0; offset < 1000; offset += 20) {
    auto res = c.get(fmt::format("/rest/timeline_entries?offset={}&limit=20", offset));
    REQUIRE(res.status == 200);
    body += res.body;
  }
  CHECK(body.find("\xff") != std::string::npos);                    // not UTF-8
  CHECK(body.find(R"("before\u0000after")") != std::string::npos);  // valid JSON, not jsonb
  CHECK(body.find("1e999999") != std::string::npos);                // beyond numeric
  CHECK(body.find(std::string(2000, '[')) != std::string::npos);    // deep
  CHECK(body.find("DROP TABLE clients") != std::string::npos);      // SQL-looking
  CHECK(body.find(R"("updatedAt":"sometime last week")") != std::string::npos);
  CHECK(body.size() > (1u << 20));  // a huge string
  std::size_t without_id = 0;
  for (std::size_t at = 0; (at = body.find("{\"type\":", at)) != std::string::npos; ++at)
    ++without_id;  // a record that starts with its first field has no id
  CHECK(without_id == static_cast<std::size_t>(missing_id["timeline_entries"]));
  for (const auto& d : lines) {
    if (d.bad != "duplicate_id" || d.entity != "timeline_entries") continue;
    auto first = body.find("\"id\":\"" + d.id + "\"");
    REQUIRE(first != std::string::npos);
    CHECK(body.find("\"id\":\"" + d.id + "\"", first + 1) != std::string::npos);  // twice
  }
}

TEST_CASE("fault_rate fails the share of data requests asked for and only those") {
  Sim sim;
  Client c(sim.port());
  auto res = c.post("/control/fault_rate", R"({"percent":100,"kinds":["500"]})");
  REQUIRE_MESSAGE(res.status == 200, res.body);
  for (int i = 0; i < 5; ++i) CHECK(c.get("/rest/users").status == 500);
  CHECK(c.get("/control/stats").status == 200);  // control requests are never faulted
  CHECK(
      c.post("/control/fault_rate", R"({"percent":100,"kinds":["429"],"retry_after":7})").status ==
      200);
  auto limited = c.get("/rest/users");
  CHECK(limited.status == 429);
  CHECK(limited.header("retry-after") == "7");
  CHECK(c.post("/control/fault_rate", R"({"percent":0})").status == 200);
  for (int i = 0; i < 5; ++i) CHECK(c.get("/rest/users").status == 200);
  simdjson::dom::parser parser;
  auto stats = parse(parser, c.get("/control/stats").body);
  CHECK(stats["fault_rate"]["injected"]["500"].get_int64().value() == 5);
  CHECK(stats["fault_rate"]["injected"]["429"].get_int64().value() == 1);
  for (const char* body :
       {R"({"percent":101})", R"({"kinds":["expire_tokens"]})", R"({"kinds":["teapot"]})"})
    CHECK(c.post("/control/fault_rate", body).status == 400);
}

TEST_CASE("fault-rate on the command line fails about that share of data requests") {
  Sim sim({"--fault-rate", "50", "--fault-delay", "10"});
  Client c(sim.port());
  int not_ok = 0;
  for (int i = 0; i < 200; ++i) {
    try {
      if (c.get("/rest/users?limit=1").status != 200) ++not_ok;
    } catch (const std::runtime_error&) {
      ++not_ok;  // truncate: no complete response
    }
  }
  simdjson::dom::parser parser;
  auto injected = parse(parser, c.get("/control/stats").body)["fault_rate"]["injected"];
  std::int64_t faults = 0;
  std::set<std::string> kinds;
  for (auto [kind, n] : injected.get_object()) {
    faults += n.get_int64().value();
    kinds.emplace(kind);
  }
  // 200 draws at 50 %: below 60 or above 140 happens with odds far below 1e-8.
  CHECK(faults > 60);
  CHECK(faults < 140);
  CHECK(not_ok <= faults);   // malformed and graphql_error answer 200
  CHECK(kinds.size() == 7);  // every per-request kind drawn in ~100 faults
}
