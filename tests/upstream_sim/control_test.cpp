// Protects the control API the fetcher's tests drive: each fault kind does what it says for
// exactly `count` data requests, mutations show in the next listing, a Relay walk survives a
// change between pages, and the counters see data requests only.
#include <doctest/doctest.h>

#include <set>
#include <thread>

#include <fmt/format.h>

#include "harness.hpp"

using namespace sim_test;
using namespace std::chrono;

namespace {

void fault(Client& c, const std::string& json) {
  REQUIRE(c.post("/control/faults", json).status == 200);
}

std::vector<std::string> mutate(Client& c, const std::string& json) {
  auto res = c.post("/control/mutate", json);
  REQUIRE_MESSAGE(res.status == 200, res.body);
  simdjson::dom::parser parser;
  std::vector<std::string> ids;
  for (auto id : parse(parser, res.body)["ids"].get_array()) ids.push_back(str(id));
  return ids;
}

// Fields of two versions of a record whose values differ, updatedAt aside.
std::vector<std::string> changed_fields(const std::string& before, const std::string& after) {
  simdjson::dom::parser pa, pb;
  auto a = parse(pa, before).get_object().value();
  auto b = parse(pb, after).get_object().value();
  std::vector<std::string> out;
  for (auto [key, value] : a)
    if (key != "updatedAt" && simdjson::minify(value) != simdjson::minify(b[key].value()))
      out.emplace_back(key);
  return out;
}

}  // namespace

TEST_CASE("fault 429 answers with Retry-After for count requests then recovers") {
  Sim sim;
  Client c(sim.port());
  fault(c, R"({"kind":"429","count":2,"retry_after":3})");
  for (int i = 0; i < 2; ++i) {
    auto res = i == 0 ? c.get("/rest/clients") : graphql(c, entity("clients"), R"("first":1)");
    CHECK(res.status == 429);
    CHECK(res.header("retry-after") == "3");
    CHECK(c.get("/control/stats").status == 200);  // control requests neither use nor get faults
  }
  CHECK(c.get("/rest/clients").status == 200);
}

TEST_CASE("faults 500 and 503 answer their status in the order queued") {
  Sim sim;
  Client c(sim.port());
  fault(c, R"({"kind":"500","count":1})");
  fault(c, R"({"kind":503,"count":2,"retry_after":0})");
  auto first = c.get("/rest/users");
  CHECK(first.status == 500);
  CHECK(first.header("retry-after").empty());
  for (int i = 0; i < 2; ++i) {
    auto res = c.get("/rest/users");
    CHECK(res.status == 503);
    CHECK(res.header("retry-after") == "0");
  }
  CHECK(c.get("/rest/users").status == 200);
}

TEST_CASE("slow fault delays the answer by delay_ms") {
  Sim sim;
  Client c(sim.port());
  fault(c, R"({"kind":"slow","count":1,"delay_ms":300})");
  auto start = steady_clock::now();
  auto res = c.get("/rest/clients?_page=1&_limit=5");
  CHECK(steady_clock::now() - start >= milliseconds(300));
  CHECK(res.status == 200);
  simdjson::dom::parser parser;
  CHECK(parse(parser, res.body).get_array().size() == 5);
  start = steady_clock::now();
  CHECK(c.get("/rest/clients").status == 200);
  CHECK(steady_clock::now() - start < milliseconds(250));
}

// Protects in_flight_max, by which the fetcher's tests see how many requests it keeps at the
// upstream at once: three clients whose requests a slow fault holds together count 3, one
// client asking in turn counts 1, and /control/reset starts the count again.
TEST_CASE("stats count the most data requests in flight at once") {
  Sim sim;
  Client c(sim.port());
  auto in_flight_max = [&] {
    simdjson::dom::parser parser;
    return parse(parser, c.get("/control/stats").body)["requests"]["in_flight_max"]
        .get_int64()
        .value();
  };
  CHECK(c.get("/rest/clients?_page=1&_limit=5").status == 200);
  CHECK(c.get("/rest/clients?_page=2&_limit=5").status == 200);
  CHECK(in_flight_max() == 1);
  fault(c, R"({"kind":"slow","count":3,"delay_ms":400})");
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i)
    clients.emplace_back([&] {
      Client own(sim.port());
      own.get("/rest/clients?_page=1&_limit=5");
    });
  for (auto& t : clients) t.join();
  CHECK(in_flight_max() == 3);
  REQUIRE(c.post("/control/reset", "{}").status == 200);
  CHECK(in_flight_max() == 0);
}

TEST_CASE("truncate fault sends a full head and half the body then closes") {
  Sim sim;
  Client c(sim.port());
  fault(c, R"({"kind":"truncate","count":2})");
  auto raw = raw_exchange(sim.port(), "GET /rest/clients?limit=50 HTTP/1.1\r\nHost: x\r\n\r\n");
  CAPTURE(raw.substr(0, 200));
  REQUIRE(raw.starts_with("HTTP/1.1 200 OK\r\n"));
  auto length_at = raw.find("\r\nContent-Length: ");
  REQUIRE(length_at != std::string::npos);
  auto announced = std::stoul(raw.substr(length_at + 18));
  auto body = raw.substr(raw.find("\r\n\r\n") + 4);
  CHECK(announced > 1000);
  CHECK(body.size() == announced / 2);
  // A real client sees an incomplete message, then recovers on a new connection.
  CHECK_THROWS(c.get("/rest/clients"));
  CHECK(c.get("/rest/clients").status == 200);
}

TEST_CASE("malformed fault answers 200 with a body that is not JSON") {
  Sim sim;
  Client c(sim.port());
  fault(c, R"({"kind":"malformed","count":1})");
  auto res = c.get("/rest/clients");
  CHECK(res.status == 200);
  simdjson::dom::parser parser;
  simdjson::dom::element ignored;
  CHECK(parser.parse(res.body).get(ignored) != simdjson::SUCCESS);
  CHECK(c.get("/rest/clients").status == 200);
}

TEST_CASE("graphql_error fault answers 200 with errors and null data") {
  Sim sim;
  Client c(sim.port());
  fault(c, R"({"kind":"graphql_error","count":1})");
  auto res = graphql(c, entity("pianos"), R"("first":5)");
  CHECK(res.status == 200);
  CHECK(res.body == R"({"errors":[{"message":"simulated"}],"data":null})");
  CHECK(relay_walk(c, entity("pianos"), 50).rows.size() == 200);
}

TEST_CASE("faults given with --fault apply from the first data request") {
  Sim sim({"--fault", "503:2:1", "--fault", "slow:1:200"});
  Client c(sim.port());
  for (int i = 0; i < 2; ++i) {
    auto res = c.get("/rest/invoices");
    CHECK(res.status == 503);
    CHECK(res.header("retry-after") == "1");
  }
  auto start = steady_clock::now();
  CHECK(c.get("/rest/invoices").status == 200);
  CHECK(steady_clock::now() - start >= milliseconds(200));
}

TEST_CASE("unknown fault kinds and bad mutations answer 400") {
  Sim sim;
  Client c(sim.port());
  for (const char* body : {R"({"kind":"teapot"})", R"({"kind":"slow","delay_ms":-1})",
                           R"({"kind":"429","count":0})", "nope"}) {
    CAPTURE(body);
    CHECK(c.post("/control/faults", body).status == 400);
  }
  for (const char* body :
       {R"({"entity":"planets","op":"add","count":1})", R"({"entity":"clients","op":"add"})",
        R"({"entity":"clients","op":"merge","count":1})",
        R"({"entity":"clients","op":"delete","ids":[1]})"}) {
    CAPTURE(body);
    CHECK(c.post("/control/mutate", body).status == 400);
  }
  CHECK(c.get("/control/ids?entity=planets").status == 400);
}

TEST_CASE("mutate update moves the oldest records to the end with one field changed") {
  Sim sim;
  Client c(sim.port());
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto before = relay_walk(c, e, 1000).rows;
    std::string global_max;
    for (const auto& x : kEntities)
      global_max = std::max(global_max, control_ids(c, x.rest).max_updated_at);

    auto ids = mutate(c, fmt::format(R"({{"entity":"{}","op":"update","count":3}})", e.rest));
    REQUIRE(ids == std::vector<std::string>{before[0].id, before[1].id, before[2].id});

    auto after = relay_walk(c, e, 1000).rows;
    REQUIRE(after.size() == before.size());
    CHECK(in_listing_order(after));
    for (int k = 0; k < 3; ++k) {
      const auto& moved = after[after.size() - 3 + static_cast<std::size_t>(k)];
      CHECK(moved.id == ids[static_cast<std::size_t>(k)]);
      CHECK(moved.updated_at > global_max);
      CHECK(changed_fields(before[static_cast<std::size_t>(k)].json, moved.json).size() == 1);
    }
    CHECK(control_ids(c, e.rest).max_updated_at == after.back().updated_at);
  }
}

TEST_CASE("mutate add appends new records after the current maximum") {
  Sim sim;
  Client c(sim.port());
  auto clients = control_ids(c, "clients").ids;
  for (const auto& e : kEntities) {
    CAPTURE(e.rest);
    auto before = control_ids(c, e.rest);
    auto ids = mutate(c, fmt::format(R"({{"entity":"{}","op":"add","count":4}})", e.rest));
    REQUIRE(ids.size() == 4);
    auto after = rest_offset_walk(c, e, 1000).rows;
    CHECK(after.size() == before.ids.size() + 4);
    CHECK(in_listing_order(after));
    for (std::size_t k = 0; k < 4; ++k) {
      const auto& added = after[after.size() - 4 + k];
      CHECK(added.id == ids[k]);
      CHECK(!std::binary_search(before.ids.begin(), before.ids.end(), added.id));
      CHECK(added.updated_at > before.max_updated_at);
      simdjson::dom::parser parser;
      simdjson::dom::element client;
      if (parse(parser, added.json)["client"]["id"].get(client) == simdjson::SUCCESS)
        CHECK(std::binary_search(clients.begin(), clients.end(), str(client)));
    }
  }
}

TEST_CASE("mutate delete removes records by id and by count") {
  Sim sim;
  Client c(sim.port());
  auto rows = relay_walk(c, entity("pianos"), 1000).rows;
  auto by_id = mutate(
      c,
      fmt::format(R"({{"entity":"pianos","op":"delete","ids":["{}","{}","pno_0000000000000000"]}})",
                  rows[10].id, rows[20].id));
  CHECK(sorted(by_id) == sorted({rows[10].id, rows[20].id}));
  auto by_count = mutate(c, R"({"entity":"pianos","op":"delete","count":3})");
  CHECK(by_count == std::vector<std::string>{rows[0].id, rows[1].id, rows[2].id});

  std::set<std::string> gone(by_id.begin(), by_id.end());
  gone.insert(by_count.begin(), by_count.end());
  std::vector<std::string> expected;
  for (const auto& r : rows)
    if (!gone.contains(r.id)) expected.push_back(r.id);
  CHECK(ids_of(relay_walk(c, entity("pianos"), 7).rows) == expected);
  CHECK(ids_of(rest_page_walk(c, entity("pianos"), 50).rows) == expected);
  CHECK(control_ids(c, "pianos").ids == sorted(expected));
}

TEST_CASE("a record updated between Relay pages is seen again at the end and order holds") {
  Sim sim;
  Client c(sim.port());
  const auto& e = entity("clients");
  auto res = graphql(c, e, R"("first":10)");
  simdjson::dom::parser parser;
  auto conn = parse(parser, res.body)["data"]["allClients"];
  auto cursor = str(conn["pageInfo"]["endCursor"].value());
  std::vector<Row> seen;
  for (auto edge : conn["edges"].get_array())
    seen.push_back({str(edge["node"]["id"]), str(edge["node"]["updatedAt"]), ""});

  auto updated = mutate(c, R"({"entity":"clients","op":"update","count":3})");
  auto rest = relay_walk(c, e, 10, "", cursor);
  seen.insert(seen.end(), rest.rows.begin(), rest.rows.end());

  CHECK(in_listing_order(seen));
  CHECK(seen.size() == 100 + 3);
  std::set<std::string> unique;
  for (const auto& r : seen) unique.insert(r.id);
  CHECK(unique.size() == 100);
  for (std::size_t k = 0; k < 3; ++k) CHECK(seen[seen.size() - 3 + k].id == updated[k]);
}

TEST_CASE("stats and the request log count data requests only and reset clears them") {
  Sim sim({"--auth", "bearer:t"});
  Client c(sim.port());
  Headers auth = {{"Authorization", "Bearer t"}};
  CHECK(c.get("/rest/clients", auth).status == 200);
  CHECK(c.get("/rest/clients").status == 401);
  fault(c, R"({"kind":"500","count":1})");
  CHECK(graphql(c, entity("users"), R"("first":1)", auth).status == 500);
  CHECK(c.post("/oauth/token", "grant_type=client_credentials").status == 404);
  CHECK(c.get("/control/ids?entity=users").status == 200);

  simdjson::dom::parser parser;
  auto stats = parse(parser, c.get("/control/stats").body);
  CHECK(simdjson::minify(stats["requests"]) ==
        R"({"total":3,"by_status":{"200":1,"401":1,"500":1},"token":1,"in_flight_max":1})");
  CHECK(stats["records"]["timeline_entries"].get_int64().value() == 500);

  auto log = parse(parser, c.get("/control/requests").body)["requests"].get_array().value();
  REQUIRE(log.size() == 3);
  std::vector<std::string> paths;
  std::vector<std::int64_t> statuses, times;
  for (auto r : log) {
    paths.push_back(str(r["path"].value()));
    statuses.push_back(r["status"].get_int64().value());
    times.push_back(r["t_ms"].get_int64().value());
  }
  CHECK(paths == std::vector<std::string>{"/rest/clients", "/rest/clients", "/graphql"});
  CHECK(statuses == std::vector<std::int64_t>{200, 401, 500});
  CHECK(std::is_sorted(times.begin(), times.end()));
  CHECK(times.front() >= 0);

  fault(c, R"({"kind":"500","count":5})");
  CHECK(c.post("/control/reset", "").status == 200);
  stats = parse(parser, c.get("/control/stats").body);
  CHECK(simdjson::minify(stats["requests"]) ==
        R"({"total":0,"by_status":{},"token":0,"in_flight_max":0})");
  CHECK(c.get("/rest/clients", auth).status == 200);              // the queued faults are gone too
  CHECK(stats["records"]["clients"].get_int64().value() == 100);  // data untouched
}
