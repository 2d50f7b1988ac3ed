// Protects the config contract: every error names the key path and the line, all errors are
// reported at once, secrets come from env or files and are never printed.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>

#include "core/config.hpp"
#include "core/log.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;

namespace {
const char* kGood = R"(database:
  url: postgresql://ingest:s3cretpw@127.0.0.1:5432/mirror
spool:
  dir: /var/lib/ingestd/spool
sources:
  gazelle:
    base_url: https://api.example.invalid/graphql
    entities:
      users: {graphql: {query: "query { allUsers }"}}
      timeline_entries:
        id: node.id
        rest: {path: /timeline}
)";

bool has_error(const config::LoadResult& r, const std::string& needle) {
  for (const auto& e : r.errors)
    if (e.find(needle) != std::string::npos) return true;
  return false;
}
}  // namespace

TEST_CASE("a valid config fills defaults and lists entities in declaration order of names") {
  auto r = config::load_string(kGood, "good.yaml");
  REQUIRE(r.errors.empty());
  REQUIRE(r.config);
  const auto& c = *r.config;
  CHECK(c.staging_purge_after == std::chrono::hours(24 * 30));
  CHECK(c.staging_purge_batch == 5000);
  CHECK(c.log_level == "info");
  REQUIRE(c.entities.size() == 2);
  CHECK(c.find_entity("users")->id_path == "id");
  CHECK(c.find_entity("timeline_entries")->id_path == "node.id");
  CHECK(c.find_entity("timeline_entries")->source == "gazelle");
}

TEST_CASE("an unknown key is an error naming its path and line - with a suggestion") {
  std::string y = std::string(kGood) + "staging:\n  purge_btach: 10\n";
  auto r = config::load_string(y, "c.yaml");
  CHECK_FALSE(r.config);
  CHECK(has_error(r, "c.yaml:14: staging.purge_btach: unknown key (did you mean 'purge_batch'?)"));
}

TEST_CASE("bad values are errors naming path and line - and all errors are reported together") {
  std::string y =
      std::string(kGood) + "staging:\n  purge_batch: 0\n  purge_after: soon\nlog:\n  level: loud\n";
  auto r = config::load_string(y, "c.yaml");
  CHECK_FALSE(r.config);
  CHECK(r.errors.size() == 3);
  CHECK(has_error(r, "c.yaml:14: staging.purge_batch: 0 is out of range"));
  CHECK(has_error(r, "c.yaml:15: staging.purge_after: 'soon' is not a duration"));
  CHECK(has_error(r, "c.yaml:17: log.level: 'loud' is not one of trace|debug|info|warn|error"));
}

// Protects requests_in_flight: it is read (default 1), bounded, and refused with pipelining off
// (the pages after the first can only be asked ahead), naming the key and its line.
TEST_CASE("requests_in_flight needs pipelining and is bounded") {
  auto with = [](const std::string& lines) {
    std::string y = kGood;
    auto at = y.find("    entities:");
    return config::load_string(y.insert(at, lines), "c.yaml");
  };
  auto r = with("");
  REQUIRE(r.config);
  CHECK(r.config->sources.at(0).requests_in_flight == 1);
  r = with("    requests_in_flight: 4\n");
  REQUIRE(r.config);
  CHECK(r.config->sources.at(0).requests_in_flight == 4);
  r = with("    requests_in_flight: 17\n");
  CHECK(has_error(r, "c.yaml:8: sources.gazelle.requests_in_flight: 17 is out of range [1, 16]"));
  r = with("    pipelining: false\n    requests_in_flight: 2\n");
  CHECK_FALSE(r.config);
  CHECK(has_error(r, "c.yaml:9: sources.gazelle.requests_in_flight: needs pipelining: true"));
}

TEST_CASE("missing required keys are errors") {
  auto r = config::load_string("log:\n  level: info\n", "c.yaml");
  CHECK(has_error(r, "database.url: is required"));
  CHECK(has_error(r, "spool.dir: is required"));
  CHECK(has_error(r, "sources: is required"));
}

TEST_CASE("entity names must be identifiers and unique across sources") {
  auto bad = config::load_string(
      "database: {url: x}\nspool: {dir: /s}\nsources:\n  a:\n    entities:\n      Bad-Name: {rest: "
      "{path: /u}}\n",
      "c.yaml");
  CHECK(has_error(bad, "c.yaml:6: sources.a.entities.Bad-Name: names here must be lowercase"));
  auto dup = config::load_string(
      "database: {url: x}\nspool: {dir: /s}\nsources:\n  a:\n    base_url: http://x\n    "
      "entities:\n      users: {rest: {path: /u}}\n"
      "  b:\n    base_url: http://x\n    entities:\n      users: {rest: {path: /u}}\n",
      "c.yaml");
  CHECK(
      has_error(dup, "sources.b.entities.users: entity 'users' is already declared by source 'a'"));
}

TEST_CASE("invalid YAML reports the line") {
  auto r = config::load_string("database:\n  url: [unclosed\n", "c.yaml");
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].find("not valid YAML") != std::string::npos);
}

TEST_CASE("${ENV} expands - and an unset variable is an error naming the key") {
  ::setenv("INGESTD_TEST_SPOOL", "/tmp/from-env", 1);
  auto r = config::load_string(
      "database: {url: x}\nspool:\n  dir: ${INGESTD_TEST_SPOOL}/spool\nsources:\n  a:\n"
      "    base_url: http://x\n    entities:\n      u: {rest: {path: /u}}\n",
      "c.yaml");
  REQUIRE(r.config);
  CHECK(r.config->spool_dir == "/tmp/from-env/spool");
  auto missing = config::load_string(
      "database:\n  url: ${INGESTD_TEST_SURELY_UNSET}\nspool: {dir: /s}\nsources:\n  a:\n"
      "    base_url: http://x\n    entities:\n      u: {rest: {path: /u}}\n",
      "c.yaml");
  CHECK(has_error(
      missing,
      "c.yaml:2: database.url: environment variable INGESTD_TEST_SURELY_UNSET is not set"));
}

TEST_CASE("a secret may come from a file - and the effective config masks it") {
  test::TempDir dir;
  auto secret_file = dir.path() / "db_url";
  std::ofstream(secret_file) << "postgresql://ingest:filepassw0rd@db.internal/mirror\n";
  auto r = config::load_string("database:\n  url_file: " + secret_file.string() +
                                   "\nspool: {dir: /s}\nsources:\n  a:\n    base_url: http://x\n   "
                                   " entities:\n      u: {rest: {path: /u}}\n",
                               "c.yaml");
  REQUIRE(r.config);
  CHECK(r.config->database_url == "postgresql://ingest:filepassw0rd@db.internal/mirror");
  auto printed = config::render_effective(*r.config);
  CHECK(printed.find("filepassw0rd") == std::string::npos);
  CHECK(printed.find("postgresql://ingest:***@db.internal/mirror") != std::string::npos);

  auto both = config::load_string("database:\n  url: x\n  url_file: " + secret_file.string() +
                                      "\nspool: {dir: /s}\nsources:\n  a:\n    base_url: "
                                      "http://x\n    entities:\n      u: {rest: {path: /u}}\n",
                                  "c.yaml");
  CHECK(has_error(both, "database.url: given twice"));
  auto unreadable = config::load_string(
      "database:\n  url_file: /nonexistent/secret\nspool: {dir: /s}\nsources:\n  a:\n"
      "    base_url: http://x\n    entities:\n      u: {rest: {path: /u}}\n",
      "c.yaml");
  CHECK(has_error(unreadable, "c.yaml:2: database.url_file: cannot read the file"));
}

TEST_CASE("loading a config registers its secrets with the logger") {
  auto r = config::load_string(kGood, "good.yaml");
  REQUIRE(r.config);
  CHECK(log::redact("connecting with s3cretpw now") == "connecting with *** now");
}

TEST_CASE("durations parse with units and combinations") {
  CHECK(config::parse_duration("500ms")->count() == 500);
  CHECK(config::parse_duration("1h30m")->count() == 5'400'000);
  CHECK(config::parse_duration("30d")->count() == 30LL * 86'400'000);
  CHECK(config::parse_duration("0")->count() == 0);
  CHECK_FALSE(config::parse_duration("10"));
  CHECK_FALSE(config::parse_duration("5 m"));
  CHECK_FALSE(config::parse_duration("-5s"));
}

TEST_CASE("docs/CONFIG.md is the generated reference") {
  auto doc = test::read_text(std::string(INGESTD_SOURCE_DIR) + "/docs/CONFIG.md");
  CHECK_MESSAGE(doc == config::render_reference(),
                "regenerate with: build/ingestd check-config --reference > docs/CONFIG.md");
}

TEST_CASE("sources and entities carry their fetch settings with defaults") {
  auto r = config::load_string(kGood, "good.yaml");
  REQUIRE(r.config);
  const auto& src = *r.config->find_source("gazelle");
  CHECK(src.base_url == "https://api.example.invalid/graphql");
  CHECK(src.rate_per_second == doctest::Approx(5.0));
  CHECK(src.rate_burst == 10);
  CHECK(src.tls_verify);
  CHECK(src.auth.kind == config::Auth::Kind::none);
  const auto& users = *r.config->find_entity("users");
  CHECK(users.request.api == config::Request::Api::graphql);
  CHECK(users.request.pagination == "relay");
  CHECK(users.overlap == std::chrono::minutes(5));
  const auto& tl = *r.config->find_entity("timeline_entries");
  CHECK(tl.request.api == config::Request::Api::rest);
  CHECK(tl.request.pagination == "page");
  CHECK(tl.request.param_page == "_page");
  CHECK(r.config->fetcher_state_dir == "/var/lib/ingestd/spool/state");
}

TEST_CASE("an entity needs exactly one request and auth needs its companions") {
  auto r = config::load_string(
      "database: {url: x}\nspool: {dir: /s}\nsources:\n  a:\n    base_url: http://x\n"
      "    auth:\n      api_key: k3y-value\n      oauth2: {token_url: http://t}\n"
      "    entities:\n      u: {}\n      v: {rest: {path: /v}, graphql: {query: q}}\n",
      "c.yaml");
  CHECK(has_error(r, "sources.a.auth: choose one of bearer_token, api_key, oauth2"));
  CHECK(has_error(r, "sources.a.auth.api_key_header: is required with api_key"));
  CHECK(has_error(r, "sources.a.auth.oauth2.client_id: is required with token_url"));
  CHECK(has_error(
      r, "c.yaml:10: sources.a.entities.u: needs exactly one of graphql.query or rest.path"));
  CHECK(has_error(r, "sources.a.entities.v: needs exactly one of graphql.query or rest.path"));
}

namespace {
std::string with_tables(const std::string& pianos, const std::string& clients) {
  return std::string(R"(database: {url: "postgresql://u@127.0.0.1/db"}
spool: {dir: /tmp/s}
sources:
  api:
    base_url: http://127.0.0.1:9
    entities:
      pianos:
        rest: {path: /p}
        table:
)") + pianos +
         R"(
      clients:
        rest: {path: /c}
        table:
)" + clients +
         "\n";
}
}  // namespace

TEST_CASE("tables: references are checked - and the order puts parents first") {
  auto good = config::load_string(with_tables(R"y(          columns:
            client_id: {path: client.id, references: clients}
            serial: {path: serial.number, type: text, required: true}
          placeholder: {serial: "({id})"})y",
                                              R"y(          name: customers
          columns:
            name: {path: name})y"),
                                  "t.yaml");
  REQUIRE(good.errors.empty());
  auto order = good.config->reconciled_in_order();
  REQUIRE(order.size() == 2);
  CHECK(order[0]->name == "clients");
  CHECK(order[0]->table.name == "customers");
  CHECK(order[1]->table.name == "pianos");
  CHECK(order[1]->table.find_column("serial")->required);
  CHECK(order[1]->table.placeholder.at("serial") == "({id})");

  auto bad = config::load_string(with_tables(R"y(          columns:
            client_id: {path: client.id, references: owners}
            version: {path: v}
            count: {path: "a..b", type: integer}
            other: {path: x, type: integer, references: clients}
          placeholder: {nope: "x"})y",
                                             R"y(          columns:
            name: {path: name, type: text})y"),
                                 "t.yaml");
  CHECK(has_error(bad,
                  "t.yaml:11: sources.api.entities.pianos.table.columns.client_id."
                  "references: 'owners' is not an entity with a table"));
  CHECK(has_error(bad,
                  "t.yaml:12: sources.api.entities.pianos.table.columns.version: this column "
                  "name is reserved"));
  CHECK(has_error(bad, "columns.count.path: 'a..b' is not a record path"));
  CHECK(has_error(bad,
                  "columns.other.type: a column with references holds an id and must be "
                  "of type text"));
  CHECK(has_error(bad, "table.placeholder.nope: 'nope' is not a column of this table"));
  auto type = config::load_string(with_tables("          columns:\n            n: {path: n}",
                                              "          columns:\n            name: {path: "
                                              "name, type: texte}"),
                                  "t.yaml");
  CHECK(has_error(type,
                  "t.yaml:16: sources.api.entities.clients.table.columns.name.type: "
                  "'texte' is not one of text|integer"));
}

TEST_CASE("tables: references may not form a cycle") {
  auto cycle = config::load_string(
      with_tables("          columns:\n            client_id: {path: c, references: clients}",
                  "          columns:\n            piano_id: {path: p, references: pianos}\n"
                  "            self_id: {path: s, references: clients}"),
      "t.yaml");
  CHECK(has_error(cycle, "references form a cycle (pianos -> clients -> pianos)"));
}
