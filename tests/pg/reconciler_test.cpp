// Protects the reconciler contract (BRIEF §3, issue 4) against a real Postgres: placeholders
// instead of foreign-key failures, newer wins, version only on change, per-row outcomes with
// isolation of bad rows, retry/dead/requeue, and full-run soft deletes.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <thread>

#include "core/migrations.hpp"
#include "reconciler/reconciler.hpp"
#include "reconciler/schema.hpp"
#include "staging/stager.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
namespace fs = std::filesystem;

namespace {

const auto& kTables = test::reconciler_tables();

struct Fixture {
  test::TestDatabase db;
  test::TempDir dir;
  fs::path spool = dir.path() / "spool";
  config::Config cfg;
  StopToken stop;
  int page = 0;

  // `extra`: lines of the reconciler: section (default: fast retries, 3 attempts).
  explicit Fixture(const std::string& extra = "",
                   const std::map<std::string, std::string>& tables = kTables) {
    test::ConfigOptions o{db.url(), spool, {"clients", "users", "pianos", "timeline_entries"}};
    o.entity_extra = tables;
    o.extra =
        "reconciler:\n" +
        (extra.empty() ? "  retry_initial: 10ms\n  retry_max: 20ms\n  max_attempts: 3\n" : extra);
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
  // Runs reconcile --once until no row is due or waiting for a retry.
  reconciler::Totals reconcile_until_settled() {
    reconciler::Totals all;
    for (int i = 0; i < 200; ++i) {
      auto t = reconcile();
      all.applied += t.applied;
      all.skipped += t.skipped;
      all.retried += t.retried;
      all.dead += t.dead;
      if (count("SELECT count(*) FROM stg_timeline_entries WHERE NOT processed") == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return all;
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

  f.stage(
      "pianos",
      {R"({"id":"pno_1","serialNumber":"S-1","client":{"id":"cln_9"},"updatedAt":"2026-01-02T00:00:00Z"})"});
  t = f.reconcile();
  CHECK(t.applied == 1);
  CHECK(t.placeholders == 1);  // cln_9
  CHECK(f.get("SELECT is_placeholder FROM pianos WHERE id = 'pno_1'") == "f");
  CHECK(f.get("SELECT serial FROM pianos WHERE id = 'pno_1'") == "S-1");
  CHECK(f.get("SELECT version FROM pianos WHERE id = 'pno_1'") == "1");
  CHECK(f.get("SELECT is_placeholder FROM pianos WHERE id = 'pno_2'") == "t");
  CHECK(f.count("SELECT count(*) FROM stg_timeline_entries WHERE outcome = 'applied'") == 3);
}

TEST_CASE("an older version never overwrites a newer one and version counts only changes") {
  Fixture f;
  f.stage("timeline_entries", {entry(1, "pno_1", R"(,"note":"v2")", "2026-01-02T00:00:00Z")});
  f.reconcile();
  auto synced = f.get("SELECT synced_at FROM timeline_entries WHERE id = 'tme_1'");

  // Older (by updatedAt) but fetched later: superseded, nothing written.
  f.stage("timeline_entries", {entry(1, "pno_1", R"(,"note":"v1")", "2026-01-01T00:00:00Z")});
  auto t = f.reconcile();
  CHECK(t.superseded == 1);
  CHECK(t.applied == 0);
  CHECK(f.get("SELECT raw_data->>'note' FROM timeline_entries WHERE id = 'tme_1'") == "v2");
  CHECK(f.get("SELECT version FROM timeline_entries WHERE id = 'tme_1'") == "1");
  CHECK(f.get("SELECT synced_at FROM timeline_entries WHERE id = 'tme_1'") == synced);
  CHECK(f.count("SELECT count(*) FROM stg_timeline_entries WHERE outcome = 'superseded' AND "
                "raw_data->>'note' = 'v1'") == 1);

  // The same content with its keys in another order: unchanged, only synced_at moves.
  auto updated = f.get("SELECT updated_at FROM timeline_entries WHERE id = 'tme_1'");
  f.stage(
      "timeline_entries",
      {R"({"note":"v2","updatedAt":"2026-01-02T00:00:00Z","client":{"id":"cln_1"},"user":{"id":"usr_1"},"piano":{"id":"pno_1"},"minutes":30,"occurredAt":"2026-01-01T10:00:00Z","id":"tme_1"})"});
  t = f.reconcile();
  CHECK(t.applied == 1);
  CHECK(f.get("SELECT version FROM timeline_entries WHERE id = 'tme_1'") == "1");
  CHECK(f.get("SELECT updated_at FROM timeline_entries WHERE id = 'tme_1'") == updated);
  CHECK(f.get("SELECT synced_at > '" + synced + "' FROM timeline_entries WHERE id = 'tme_1'") ==
        "t");

  // Newer content: applied, version 2.
  f.stage("timeline_entries", {entry(1, "pno_1", R"(,"note":"v3")", "2026-01-03T00:00:00Z")});
  f.reconcile();
  CHECK(f.get("SELECT raw_data->>'note' FROM timeline_entries WHERE id = 'tme_1'") == "v3");
  CHECK(f.get("SELECT version FROM timeline_entries WHERE id = 'tme_1'") == "2");

  // Two versions in one batch: the newest wins whatever the order in the page.
  f.stage("timeline_entries", {entry(2, "pno_1", R"(,"note":"new")", "2026-02-02T00:00:00Z"),
                               entry(2, "pno_1", R"(,"note":"old")", "2026-02-01T00:00:00Z")});
  t = f.reconcile();
  CHECK(t.applied == 1);
  CHECK(t.superseded == 1);
  CHECK(f.get("SELECT raw_data->>'note' FROM timeline_entries WHERE id = 'tme_2'") == "new");
  CHECK(f.get("SELECT version FROM timeline_entries WHERE id = 'tme_2'") == "1");
}

TEST_CASE("invalid rows are skipped with the reason while the rest of their batch applies") {
  Fixture f;
  f.stage("timeline_entries",
          {entry(1, "pno_1"), R"({"id":"tme_2","minutes":30,"updatedAt":"2026-01-01T00:00:00Z"})",
           entry(3, "pno_1", R"(,"minutes":"abc")"), entry(4, "pno_1", R"(,"minutes":1.5)"),
           R"({"id":"tme_5","occurredAt":"not a time","updatedAt":"2026-01-01T00:00:00Z"})",
           entry(6, "pno_1", R"(,"minutes":99999999999)"),
           R"({"occurredAt":"2026-01-01T10:00:00Z"})", R"([1,2,3])", entry(7, "pno_2"),
           R"({"id":"tme_8","occurredAt":"2026-01-01T10:00:00Z","updatedAt":12})"});
  auto t = f.reconcile();
  CHECK(t.applied == 2);
  CHECK(t.skipped == 8);
  CHECK(f.count("SELECT count(*) FROM timeline_entries") == 2);
  CHECK(f.count("SELECT count(*) FROM stg_timeline_entries WHERE NOT processed") == 0);
  auto reason = [&](const std::string& id) {
    return f.get("SELECT last_error FROM stg_timeline_entries WHERE external_id = '" + id +
                 "' AND outcome = 'skipped'");
  };
  CHECK(reason("tme_2") == "missing required field occurred_at (occurredAt)");
  CHECK(reason("tme_3") == "minutes (minutes): expected an integer, got string");
  CHECK(reason("tme_4") == "minutes (minutes): expected an integer, got 1.5");
  CHECK(reason("tme_5").starts_with("occurred_at (occurredAt): invalid input syntax"));
  CHECK(reason("tme_6").starts_with("minutes (minutes): "));
  CHECK(reason("tme_6").find("out of range") != std::string::npos);
  CHECK(reason("tme_8") == "updatedAt: expected an RFC 3339 time string, got number");
  CHECK(f.count("SELECT count(*) FROM stg_timeline_entries WHERE external_id IS NULL AND "
                "outcome = 'skipped' AND last_error <> ''") == 2);

  // After a fix of the mapping an operator requeues the skipped rows; still invalid here,
  // they are skipped again with the same reasons, and the applied rows are not touched.
  auto conn = f.db.connect();
  CHECK(reconciler::requeue(conn, *f.cfg.find_entity("timeline_entries"),
                            reconciler::Requeue::skipped) == 8);
  CHECK(f.count("SELECT count(*) FROM stg_timeline_entries WHERE NOT processed") == 8);
  auto again = f.reconcile();
  CHECK(again.skipped == 8);
  CHECK(again.applied == 0);
  CHECK(reason("tme_3") == "minutes (minutes): expected an integer, got string");
}

TEST_CASE("a database error is retried with backoff then dead then requeued after the fix") {
  Fixture f("  retry_initial: 1s\n  retry_max: 1s\n  max_attempts: 3\n");
  {
    auto conn = f.db.connect();
    conn.exec_script("ALTER TABLE timeline_entries ADD CONSTRAINT short CHECK (minutes < 100)");
  }
  f.stage("timeline_entries", {entry(1, "pno_1"), entry(2, "pno_1", R"(,"minutes":500)")});
  auto first = f.reconcile();
  CHECK(first.applied == 1);
  CHECK(first.retried == 1);
  CHECK(f.get("SELECT processing_attempts FROM stg_timeline_entries WHERE external_id = 'tme_2'") ==
        "1");
  CHECK(f.get("SELECT next_attempt_at > now() FROM stg_timeline_entries WHERE external_id = "
              "'tme_2'") == "t");
  CHECK(f.get("SELECT last_error FROM stg_timeline_entries WHERE external_id = 'tme_2'")
            .find("short") != std::string::npos);

  auto rest = f.reconcile_until_settled();  // attempts 2 and 3 (max_attempts: 3)
  CHECK(rest.retried == 1);
  CHECK(rest.dead == 1);
  CHECK(f.get("SELECT outcome FROM stg_timeline_entries WHERE external_id = 'tme_2'") == "dead");
  CHECK(f.get("SELECT processing_attempts FROM stg_timeline_entries WHERE external_id = 'tme_2'") ==
        "3");
  CHECK(f.count("SELECT count(*) FROM timeline_entries WHERE id = 'tme_2'") == 0);

  // Dead rows wait for a person: nothing retries them.
  CHECK(f.reconcile().dead == 0);
  {
    auto conn = f.db.connect();
    conn.exec_script("ALTER TABLE timeline_entries DROP CONSTRAINT short");
  }
  test::TempDir logs;
  test::Child requeue({"requeue", "-c", (f.dir.path() / "ingestd.yaml").string(), "--entity",
                       "timeline_entries", "--dead"},
                      logs.path() / "requeue.log");
  CHECK(requeue.wait(std::chrono::seconds(20)) == 0);
  CHECK(requeue.log_text().find("1 dead row(s) back in line") != std::string::npos);
  auto after = f.reconcile();
  CHECK(after.applied == 1);
  CHECK(f.get("SELECT outcome FROM stg_timeline_entries WHERE external_id = 'tme_2'") == "applied");
  CHECK(f.get("SELECT minutes FROM timeline_entries WHERE id = 'tme_2'") == "500");
}

namespace {
std::string client(int n, const std::string& name = "Ann") {
  return fmt::format(
      R"({{"id":"cln_{}","firstName":"{}","lastName":"L{}","email":"c{}@example.com","updatedAt":"2026-01-01T00:00:00Z"}})",
      n, name, n, n);
}
}  // namespace

TEST_CASE("a complete full run soft-deletes exactly the rows it did not see") {
  Fixture f("  max_delete_fraction: 0.6\n");
  f.stage("clients", {client(1), client(2), client(3), client(4), client(5)}, "inc1");
  f.reconcile();
  CHECK(f.count("SELECT count(*) FROM clients WHERE deleted_at IS NULL") == 5);
  // A placeholder is never deleted by a full run: it never claimed to exist upstream.
  f.stage("pianos", {R"({"id":"pno_1","client":{"id":"cln_77"}})"}, "p1");
  f.reconcile();

  // A full run that never finished: no run_end, so it never deletes anything.
  f.stage("clients", {client(1)}, "full0", "full");
  f.reconcile();
  CHECK(f.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL") == 0);
  CHECK(f.count("SELECT count(*) FROM ingestd_full_run_ids WHERE run_id = 'full0'") == 1);

  // Full run: two pages; cln_2 unchanged (no new staging row), cln_1 changed, cln_5 missing.
  f.stage("clients", {client(1, "Anna"), client(2)}, "full1", "full");
  f.stage("clients", {client(3), client(4)}, "full1", "full");
  f.reconcile();
  CHECK(f.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL") == 0);  // no run_end
  test::spool_run_end(f.spool, "clients", "full1", "full", 2, 4);
  f.stage("clients", {});
  auto t = f.reconcile();
  CHECK(t.deleted == 1);
  CHECK(f.get("SELECT string_agg(id, ',') FROM clients WHERE deleted_at IS NOT NULL") == "cln_5");
  CHECK(f.get("SELECT is_placeholder FROM clients WHERE id = 'cln_77'") == "t");
  CHECK(f.get("SELECT deleted_at IS NULL FROM clients WHERE id = 'cln_77'") == "t");
  CHECK(f.get("SELECT deletion || ':' || deleted FROM ingestd_fetch_runs WHERE run_id = 'full1'") ==
        "applied:1");
  CHECK(f.count("SELECT count(*) FROM ingestd_full_run_ids WHERE run_id = 'full1'") == 0);
  CHECK(f.count("SELECT count(*) FROM ingestd_full_run_ids WHERE run_id = 'full0'") == 0);

  // A full run whose marker counts a page that never arrived deletes nothing.
  f.stage("clients", {client(1, "Anna")}, "full2", "full");
  test::spool_run_end(f.spool, "clients", "full2", "full", 2, 3);
  f.stage("clients", {});
  CHECK(f.reconcile().deleted == 0);
  CHECK(f.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL") == 1);
  CHECK(f.get("SELECT reconciled_at IS NULL FROM ingestd_fetch_runs WHERE run_id = 'full2'") ==
        "t");

  // The deleted record comes back unchanged in the next full run: undeleted. full2, older
  // and incomplete, is settled as superseded.
  f.stage("clients", {client(1, "Anna"), client(2), client(3), client(4), client(5)}, "full3",
          "full");
  test::spool_run_end(f.spool, "clients", "full3", "full", 1, 5);
  f.stage("clients", {});
  t = f.reconcile();
  CHECK(t.undeleted == 1);
  CHECK(f.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL") == 0);
  CHECK(f.get("SELECT deletion FROM ingestd_fetch_runs WHERE run_id = 'full2'") == "superseded");

  // An upstream that suddenly answers with almost nothing: the guard refuses.
  f.stage("clients", {client(1, "Anna")}, "full4", "full");
  test::spool_run_end(f.spool, "clients", "full4", "full", 1, 1);
  f.stage("clients", {});
  t = f.reconcile();
  CHECK(t.deletions_refused == 1);
  CHECK(f.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL") == 0);
  CHECK(f.get("SELECT deletion FROM ingestd_fetch_runs WHERE run_id = 'full4'") == "refused");

  // The run_end of an older full run staged after a newer one was settled: it knows less,
  // so it is superseded and deletes nothing.
  test::spool_run_end(f.spool, "clients", "full0", "full", 1, 1);
  f.stage("clients", {});
  t = f.reconcile();
  CHECK(t.deleted == 0);
  CHECK(f.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL") == 0);
  CHECK(f.get("SELECT deletion FROM ingestd_fetch_runs WHERE run_id = 'full0'") == "superseded");
}

TEST_CASE("a fuzzy reference links to a close natural key and records the link for review") {
  auto tables = kTables;
  tables["timeline_entries"] = R"y(table:
  columns:
    occurred_at: {path: occurredAt, type: timestamptz, required: true}
    client_id:
      path: client.id
      references: clients
      match: {column: email, path: client.email, max_distance: 2})y";
  Fixture f("", tables);
  f.stage("clients", {client(1)});
  f.reconcile();
  f.stage(
      "timeline_entries",
      {R"({"id":"tme_1","occurredAt":"2026-01-01T10:00:00Z","client":{"id":"cln_old1","email":"c1@exmple.com"}})",
       R"({"id":"tme_2","occurredAt":"2026-01-01T10:00:00Z","client":{"id":"cln_old2","email":"someone@else.org"}})"});
  auto t = f.reconcile();
  CHECK(t.fuzzy_links == 1);
  CHECK(t.placeholders == 1);
  CHECK(f.get("SELECT client_id FROM timeline_entries WHERE id = 'tme_1'") == "cln_1");
  CHECK(f.get("SELECT client_id FROM timeline_entries WHERE id = 'tme_2'") == "cln_old2");
  CHECK(f.get("SELECT unknown_id || '>' || matched_id || ':' || distance FROM "
              "ingestd_fuzzy_links WHERE record_id = 'tme_1'") == "cln_old1>cln_1:1");
  CHECK(f.get("SELECT is_placeholder FROM clients WHERE id = 'cln_old2'") == "t");

  // Two records naming one unknown id with different keys: each is judged on its own value.
  // A key longer than levenshtein's 255 characters never matches and never fails the row.
  f.stage(
      "timeline_entries",
      {R"({"id":"tme_3","occurredAt":"2026-01-01T10:00:00Z","client":{"id":"cln_x","email":"c1@exmple.com"}})",
       R"({"id":"tme_4","occurredAt":"2026-01-01T10:00:00Z","client":{"id":"cln_x","email":"nobody@elsewhere.org"}})",
       R"({"id":"tme_5","occurredAt":"2026-01-01T10:00:00Z","client":{"id":"cln_y","email":")" +
           std::string(300, 'a') + R"("}})"});
  t = f.reconcile();
  CHECK(t.applied == 3);
  CHECK(t.skipped == 0);
  CHECK(f.get("SELECT client_id FROM timeline_entries WHERE id = 'tme_3'") == "cln_1");
  CHECK(f.get("SELECT client_id FROM timeline_entries WHERE id = 'tme_4'") == "cln_x");
  CHECK(f.get("SELECT client_id FROM timeline_entries WHERE id = 'tme_5'") == "cln_y");
  CHECK(f.count("SELECT count(*) FROM ingestd_fuzzy_links WHERE record_id = 'tme_4'") == 0);
}

TEST_CASE("one entity failing does not stop the others") {
  Fixture f;
  f.stage("users", {R"({"id":"usr_1","name":"Tech"})"});
  f.stage("timeline_entries", {entry(1, "pno_1")});
  {
    auto conn = f.db.connect();
    conn.exec_script("ALTER TABLE stg_users RENAME TO stg_users_broken");
  }
  reconciler::Totals t;
  CHECK(reconciler::run(f.cfg, f.stop, {reconciler::RunMode::until_empty, ""}, &t) == 1);
  CHECK(t.applied == 1);
  CHECK(f.count("SELECT count(*) FROM timeline_entries") == 1);
}

TEST_CASE("a missing production table pauses its entity without marking a single row") {
  Fixture f;
  f.stage("users", {R"({"id":"usr_1","name":"Tech"})"});
  f.stage("timeline_entries", {entry(1, "pno_1"), entry(2, "pno_1")});
  {
    auto conn = f.db.connect();
    conn.exec_script("ALTER TABLE timeline_entries RENAME TO timeline_entries_away");
  }
  reconciler::Totals t;
  CHECK(reconciler::run(f.cfg, f.stop, {reconciler::RunMode::until_empty, ""}, &t) == 1);
  CHECK(t.applied == 1);  // the user
  CHECK(t.dead == 0);
  CHECK(t.retried == 0);
  CHECK(f.count("SELECT count(*) FROM stg_timeline_entries WHERE processed OR "
                "processing_attempts > 0") == 0);
  {
    auto conn = f.db.connect();
    conn.exec_script("ALTER TABLE timeline_entries_away RENAME TO timeline_entries");
  }
  CHECK(f.reconcile().applied == 2);
}

TEST_CASE("migrate adds configured columns and checks a user-owned table column by column") {
  Fixture f;
  auto tables = kTables;
  tables["users"] = R"y(table:
  columns:
    name:  {path: name, type: text}
    level: {path: level, type: integer}
  placeholder: {level: "n/a"})y";
  tables["clients"] += "\n  user_owned: true";
  {
    auto conn = f.db.connect();
    conn.exec_script(
        "ALTER TABLE clients DROP COLUMN email; ALTER TABLE clients ALTER COLUMN "
        "last_name TYPE integer USING 0");
  }
  test::ConfigOptions o{f.db.url(), f.spool, {"clients", "users", "pianos", "timeline_entries"}};
  o.entity_extra = tables;
  test::TempDir d;
  auto cfg = test::write_config(d.path(), o);
  auto conn = f.db.connect();
  auto report = reconciler::ensure_tables(conn, cfg);
  CHECK(std::find(report.added.begin(), report.added.end(), "users.level") != report.added.end());
  CHECK(f.get("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
              "'users'::regclass AND attname = 'level'") == "integer");
  REQUIRE(report.problems.size() == 3);
  CHECK(report.problems[0] ==
        "table clients: column last_name is integer, the configuration says "
        "text (migrate never changes a column's type: alter it yourself or "
        "rename the column in the configuration)");
  CHECK(report.problems[1] == "table clients: column email is missing (want text)");
  CHECK(report.problems[2].starts_with(
      "table users: placeholder value 'n/a' for column level is not a integer"));
  // Additive only: running it again changes nothing.
  auto again = reconciler::ensure_tables(conn, cfg);
  CHECK(again.added.empty());
  CHECK(again.created.empty());
}

TEST_CASE("ingestd placeholders lists open placeholders with the rows that reference them") {
  Fixture f;
  f.stage("timeline_entries", {entry(1, "pno_1"), entry(2, "pno_2"), entry(3, "pno_1")});
  f.reconcile();
  f.stage("pianos", {R"({"id":"pno_2","serialNumber":"S-2","client":{"id":"cln_1"}})"});
  f.reconcile();
  test::TempDir logs;
  auto cfg = (f.dir.path() / "ingestd.yaml").string();
  test::Child json({"placeholders", "-c", cfg, "--entity", "pianos", "--json"},
                   logs.path() / "json.log");
  REQUIRE(json.wait(std::chrono::seconds(20)) == 0);
  auto out = json.log_text();
  out = out.substr(out.find("{\"open\""));
  CHECK(out.starts_with(
      R"({"open":{"pianos":1},"placeholders":[{"entity":"pianos","id":"pno_1","since":")"));
  CHECK(
      out.find(
          R"("referenced_by":[{"from":"timeline_entries.piano_id","rows":2,"example":"tme_1"}]}]})") !=
      std::string::npos);

  test::Child table({"placeholders", "-c", cfg}, logs.path() / "table.log");
  REQUIRE(table.wait(std::chrono::seconds(20)) == 0);
  auto text = table.log_text();
  CHECK(text.find("open placeholders: clients 1, users 1, pianos 1, timeline_entries 0") !=
        std::string::npos);
  CHECK(text.find("pianos.client_id x1 (e.g. pno_2), timeline_entries.client_id x3 (e.g. tme_1)") !=
        std::string::npos);
}
