// Protects the simulator's protocol surface: GraphQL and REST error answers, 404s, keep-alive,
// each --auth mode (401 without credentials, OAuth2 tokens that expire), the command line and
// a prompt clean exit on SIGTERM and SIGINT.
#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "harness.hpp"

using namespace sim_test;
using namespace std::chrono;

namespace {

// The "errors" answer of a GraphQL server: HTTP 200, a message, data null.
void check_graphql_error(const Response& res) {
  CAPTURE(res.body);
  CHECK(res.status == 200);
  simdjson::dom::parser parser;
  auto doc = parse(parser, res.body);
  CHECK(!str(doc["errors"].at(0)["message"].value()).empty());
  CHECK(doc["data"].is_null());
}

std::string json_error(const Response& res) {
  simdjson::dom::parser parser;
  return str(parse(parser, res.body)["error"].value());
}

Response token(Client& c, const std::string& form, const Headers& headers = {}) {
  return c.post("/oauth/token", form, headers, "application/x-www-form-urlencoded");
}

}  // namespace

TEST_CASE("bad GraphQL requests answer 200 with errors and null data") {
  Sim sim;
  Client c(sim.port());
  check_graphql_error(
      c.post("/graphql", R"({"query":"{ allPlanets { edges { node { id } } } }"})"));
  check_graphql_error(c.post("/graphql", R"({"variables":{}})"));
  const auto& e = entity("clients");
  for (const char* vars :
       {R"("first":1001)", R"("first":-1)", R"("first":"ten")", R"("after":"not a cursor")",
        R"("after":"bm8gYmFyIGhlcmU=")", R"("since":"yesterday")",
        R"("until":"2026-13-01T00:00:00Z")", R"("page":0,"perPage":0)", R"("page":-1)",
        R"("page":0,"perPage":1001)"}) {
    CAPTURE(vars);
    check_graphql_error(graphql(c, e, vars));
  }
  auto not_json = c.post("/graphql", "{query");
  CHECK(not_json.status == 400);
  simdjson::dom::parser parser;
  CHECK(parse(parser, not_json.body)["errors"].is_array());
}

TEST_CASE("Relay past the end has no next page and a null endCursor") {
  Sim sim;
  Client c(sim.port());
  auto res = graphql(c, entity("users"), R"("first":10,"since":"2030-01-01T00:00:00Z")");
  CHECK(res.body ==
        R"({"data":{"allUsers":{"pageInfo":{"hasNextPage":false,"endCursor":null},"edges":[]}}})");
}

TEST_CASE("page-number answers carry the count only when the query names it") {
  Sim sim;
  Client c(sim.port());
  auto res =
      c.post("/graphql", R"({"query":"{ allUsers { id } }","variables":{"page":0,"perPage":2}})");
  simdjson::dom::parser parser;
  auto data = parse(parser, res.body)["data"];
  CHECK(data["allUsers"].get_array().size() == 2);
  CHECK(data["_allUsersMeta"].error() == simdjson::NO_SUCH_FIELD);
}

TEST_CASE("bad REST parameters answer 400 with a JSON error") {
  Sim sim;
  Client c(sim.port());
  for (const char* target :
       {"/rest/clients?_limit=1001", "/rest/clients?_page=0", "/rest/clients?limit=0",
        "/rest/clients?offset=-1", "/rest/clients?_page=1&offset=0", "/rest/clients?limit=ten",
        "/rest/clients?updated_since=yesterday", "/rest/clients?updated_since=%zz"}) {
    CAPTURE(target);
    auto res = c.get(target);
    CHECK(res.status == 400);
    CHECK(!json_error(res).empty());
  }
  // An unencoded '+' decodes to a space: the message says what to do.
  auto plus = c.get("/rest/clients?updated_since=2026-10-01T00:00:00+00:00");
  CHECK(plus.status == 400);
  CHECK(json_error(plus).find("%2B") != std::string::npos);
}

TEST_CASE("unknown paths entities and methods answer 404 or 405 with JSON") {
  Sim sim;
  Client c(sim.port());
  for (const char* target : {"/", "/rest/planets", "/rest/", "/graphql/x", "/control/nope"}) {
    CAPTURE(target);
    auto res = c.get(target);
    CHECK(res.status == 404);
    CHECK(!json_error(res).empty());
  }
  CHECK(c.get("/graphql").status == 405);
  CHECK(c.post("/rest/clients", "{}").status == 405);
  CHECK(c.get("/oauth/token").status == 404);  // no token endpoint without --auth oauth2
}

TEST_CASE("one client connection serves many requests") {
  Sim sim;
  Client c(sim.port());
  for (int i = 0; i < 20; ++i) REQUIRE(c.get("/rest/users?_page=1&_limit=2").status == 200);
  for (int i = 0; i < 5; ++i) REQUIRE(graphql(c, entity("users"), R"("first":2)").status == 200);
  CHECK(c.connects() == 1);
}

TEST_CASE("a POST with Expect 100-continue gets 100 Continue before sending its body") {
  Sim sim;
  RawConnection conn(sim.port());
  std::string body =
      R"({"query":"{ allUsers { edges { node { id } } } }","variables":{"first":1}})";
  conn.send(
      fmt::format("POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  "Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
                  body.size()));
  CHECK(conn.receive(milliseconds(500), "\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n");
  conn.send(body);
  auto answer = conn.receive(milliseconds(2000));
  CHECK(answer.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(answer.find(R"("allUsers")") != std::string::npos);
}

TEST_CASE("bearer auth answers 401 without the configured token") {
  Sim sim({"--auth", "bearer:s3cret"});
  Client c(sim.port());
  auto none = c.get("/rest/clients");
  CHECK(none.status == 401);
  CHECK(none.header("www-authenticate").starts_with("Bearer"));
  CHECK(!json_error(none).empty());
  auto wrong = c.get("/rest/clients", {{"Authorization", "Bearer nope"}});
  CHECK(wrong.status == 401);
  CHECK(wrong.header("www-authenticate") == R"(Bearer error="invalid_token")");
  CHECK(graphql(c, entity("clients"), R"("first":1)").status == 401);
  CHECK(c.get("/rest/clients", {{"Authorization", "Bearer s3cret"}}).status == 200);
  CHECK(c.get("/rest/clients", {{"Authorization", "bearer s3cret"}}).status == 200);
  CHECK(
      graphql(c, entity("clients"), R"("first":1)", {{"Authorization", "Bearer s3cret"}}).status ==
      200);
  CHECK(c.get("/control/stats").status == 200);  // the control API needs no credentials
}

TEST_CASE("apikey auth requires the configured header and value") {
  Sim sim({"--auth", "apikey:X-Api-Key:k:with:colons"});
  Client c(sim.port());
  CHECK(c.get("/rest/pianos").status == 401);
  CHECK(c.get("/rest/pianos", {{"X-Api-Key", "k"}}).status == 401);
  CHECK(c.get("/rest/pianos", {{"Authorization", "Bearer k:with:colons"}}).status == 401);
  CHECK(c.get("/rest/pianos", {{"X-Api-Key", "k:with:colons"}}).status == 200);
  CHECK(c.get("/rest/pianos", {{"x-api-key", "k:with:colons"}}).status == 200);
}

TEST_CASE("oauth2 tokens work until expire_tokens and then answer invalid_token") {
  Sim sim({"--auth", "oauth2:app:pa ss", "--token-ttl", "120"});
  Client c(sim.port());
  CHECK(c.get("/rest/clients").status == 401);
  auto res = token(c, "grant_type=client_credentials&client_id=app&client_secret=pa+ss");
  REQUIRE(res.status == 200);
  CHECK(res.header("cache-control") == "no-store");
  simdjson::dom::parser parser;
  auto doc = parse(parser, res.body);
  auto tok = str(doc["access_token"].value());
  CHECK(str(doc["token_type"].value()) == "Bearer");
  CHECK(doc["expires_in"].get_int64().value() == 120);
  Headers auth = {{"Authorization", "Bearer " + tok}};
  CHECK(c.get("/rest/clients", auth).status == 200);
  CHECK(graphql(c, entity("clients"), R"("first":1)", auth).status == 200);

  CHECK(c.post("/control/faults", R"({"kind":"expire_tokens"})").status == 200);
  auto expired = c.get("/rest/clients", auth);
  CHECK(expired.status == 401);
  CHECK(expired.header("www-authenticate") == R"(Bearer error="invalid_token")");
  CHECK(json_error(expired) == "invalid_token");

  auto again = token(c, "grant_type=client_credentials&client_id=app&client_secret=pa%20ss");
  REQUIRE(again.status == 200);
  auto tok2 = str(parse(parser, again.body)["access_token"].value());
  CHECK(tok2 != tok);
  CHECK(c.get("/rest/clients", {{"Authorization", "Bearer " + tok2}}).status == 200);
  CHECK(parse(parser, c.get("/control/stats").body)["requests"]["token"].get_int64().value() == 2);
}

TEST_CASE("oauth2 token endpoint takes HTTP Basic and refuses wrong credentials") {
  Sim sim({"--auth", "oauth2:app:secret"});
  Client c(sim.port());
  // base64("app:secret") and base64("app:wrong")
  CHECK(token(c, "grant_type=client_credentials", {{"Authorization", "Basic YXBwOnNlY3JldA=="}})
            .status == 200);
  auto bad_basic =
      token(c, "grant_type=client_credentials", {{"Authorization", "Basic YXBwOndyb25n"}});
  CHECK(bad_basic.status == 401);
  CHECK(json_error(bad_basic) == "invalid_client");
  CHECK(token(c, "grant_type=client_credentials&client_id=app&client_secret=nope").status == 401);
  CHECK(token(c, "grant_type=client_credentials&client_id=other&client_secret=secret").status ==
        401);
  CHECK(token(c, "grant_type=client_credentials").status == 401);
  auto grant = token(c, "grant_type=password&client_id=app&client_secret=secret");
  CHECK(grant.status == 400);
  CHECK(json_error(grant) == "unsupported_grant_type");
}

TEST_CASE("oauth2 tokens expire after token-ttl seconds") {
  Sim sim({"--auth", "oauth2:app:secret", "--token-ttl", "1"});
  Client c(sim.port());
  auto res = token(c, "grant_type=client_credentials&client_id=app&client_secret=secret");
  REQUIRE(res.status == 200);
  simdjson::dom::parser parser;
  Headers auth = {
      {"Authorization", "Bearer " + str(parse(parser, res.body)["access_token"].value())}};
  CHECK(c.get("/rest/users", auth).status == 200);
  std::this_thread::sleep_for(milliseconds(1100));
  auto expired = c.get("/rest/users", auth);
  CHECK(expired.status == 401);
  CHECK(expired.header("www-authenticate") == R"(Bearer error="invalid_token")");
}

TEST_CASE("SIGTERM and SIGINT exit 0 within one second with a connection open") {
  for (int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    Sim sim;
    Client c(sim.port());
    REQUIRE(c.get("/rest/clients").status == 200);  // the keep-alive connection stays open
    auto start = steady_clock::now();
    sim.signal(sig);
    auto status = sim.wait(milliseconds(1000));
    REQUIRE(status.has_value());
    CHECK(*status == 0);
    CHECK(steady_clock::now() - start < milliseconds(1000));
  }
}

TEST_CASE("bad command lines exit 2 before listening") {
  for (const char* args : {"--auth bogus", "--auth bearer:", "--size 0", "--fault 418:1",
                           "--fault slow:0", "--fault 500:1:5", "--port 70000", "--nope"}) {
    CAPTURE(args);
    auto cmd = fmt::format("{} {} >/dev/null 2>&1", UPSTREAM_SIM_BINARY, args);
    int rc = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(rc));
    CHECK(WEXITSTATUS(rc) == 2);
  }
}
