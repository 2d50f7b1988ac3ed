// Protects the sync_status contract (issue 5, BRIEF §3 Monitor): every stage writes one row
// per run per entity — the fetcher's through spool run summaries that the stager upserts
// (newest summary wins; a run_end closes a row its fetcher never closed), the stager's and
// the reconciler's from their own counts — and a run left 'running' by a process that died
// is closed as failed by the next start, while a live process's run is left alone.
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "core/migrations.hpp"
#include "core/spool.hpp"
#include "core/stage_runs.hpp"
#include "reconciler/reconciler.hpp"
#include "reconciler/schema.hpp"
#include "staging/stager.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  test::TestDatabase db;
  test::TempDir dir;
  fs::path spool = dir.path() / "spool";
  config::Config cfg;
  StopToken stop;

  Fixture() {
    test::ConfigOptions o{db.url(), spool, {"clients", "users", "pianos", "timeline_entries"}};
    o.entity_extra = test::reconciler_tables();
    cfg = test::write_config(dir.path(), o);
    auto conn = db.connect();
    (void)migrations::migrate(conn, cfg);
    REQUIRE(reconciler::ensure_tables(conn, cfg).problems.empty());
  }
  staging::Totals stage() {
    staging::Totals t;
    REQUIRE(staging::run(cfg, stop, staging::RunMode::until_empty, &t) == 0);
    return t;
  }
  std::string get(const std::string& sql) { return db.scalar(sql); }
  std::int64_t count(const std::string& sql) { return db.count(sql); }

  // A run summary as the fetcher writes it, written at `at`.
  void summary(const std::string& run, const std::string& status, SysTime at,
               const std::string& error = "") {
    spool::Meta m;
    m.source = "gazelle";
    m.entity = "clients";
    m.run_id = run;
    m.mode = "incremental";
    m.fetched_at = at;
    m.summary.status = status;
    m.summary.started_at = at - 10s;
    if (status != "running") m.summary.completed_at = at;
    m.summary.records = 120;
    m.summary.pages = 3;
    m.summary.requests = 4;
    m.summary.failed_requests = 1;
    m.summary.retries = 1;
    m.summary.throttled_seconds = 1.5;
    m.summary.statuses = {{"200", 3}, {"503", 1}};
    m.summary.error = error;
    m.summary.host = "fetch-host";
    m.summary.pid = 4242;
    spool::write_run_summary(spool, m);
  }
};

std::string client(int id) {
  return fmt::format(R"({{"id":"cln_{}","firstName":"A{}","updatedAt":"2026-01-01T00:00:00Z"}})",
                     id, id);
}

std::string entry(int id, const std::string& piano) {
  return fmt::format(
      R"({{"id":"tme_{}","occurredAt":"2026-01-01T10:00:00Z","minutes":30,"piano":{{"id":"{}"}},"user":{{"id":"usr_1"}},"client":{{"id":"cln_1"}},"updatedAt":"2026-01-01T00:00:00Z"}})",
      id, piano);
}

// A pid that belonged to a process of this host and is gone now.
pid_t dead_pid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return pid;
}

}  // namespace

TEST_CASE("fetcher run summaries become the fetcher's sync_status row") {
  Fixture f;
  auto t0 = std::chrono::system_clock::now() - 1min;
  f.summary("r1", "running", t0);
  f.stage();
  CHECK(f.get("SELECT status FROM sync_status WHERE stage = 'fetcher' AND run_id = 'r1'") ==
        "running");
  f.summary("r1", "failed", t0 + 20s, "HTTP 500 from upstream");
  auto t = f.stage();
  CHECK(t.run_summaries == 1);
  CHECK(f.count("SELECT count(*) FROM sync_status WHERE stage = 'fetcher'") == 1);
  CHECK(f.get("SELECT concat_ws('|', sync_type, status, mode, records_fetched, error_rate, "
              "error_summary->>'error', error_summary->'statuses'->>'503', "
              "performance_metrics->>'pages', performance_metrics->>'throttled_seconds', host, "
              "pid, completed_at IS NOT NULL) FROM sync_status WHERE run_id = 'r1'") ==
        "clients|failed|incremental|120|25|HTTP 500 from upstream|1|3|1.5|fetch-host|4242|t");
  CHECK(f.count("SELECT count(*) FROM ingestd_spool_ledger WHERE outcome = 'run_summary'") == 2);
}

TEST_CASE("an older run summary staged after a newer one changes nothing") {
  Fixture f;
  auto t0 = std::chrono::system_clock::now() - 1min;
  f.summary("r1", "success", t0 + 30s);
  f.stage();
  f.summary("r1", "running", t0);  // two stager workers may stage out of order
  f.stage();
  CHECK(f.get("SELECT status FROM sync_status WHERE run_id = 'r1'") == "success");
}

TEST_CASE("a run_end marker closes a fetcher row whose final summary never came") {
  Fixture f;
  auto t0 = std::chrono::system_clock::now() - 1min;
  f.summary("r1", "running", t0);
  test::spool_page(f.spool, "clients", {client(1), client(2)}, 1, "r1");
  test::spool_run_end(f.spool, "clients", "r1", "incremental", 1, 2);
  f.stage();
  CHECK(f.get("SELECT concat_ws('|', status, records_fetched, completed_at IS NOT NULL) FROM "
              "sync_status WHERE stage = 'fetcher' AND run_id = 'r1'") == "success|2|t");
}

TEST_CASE("a run summary that breaks the contract is quarantined not recorded") {
  Fixture f;
  fs::create_directories(spool::incoming_dir(f.spool, "clients"));
  spool::write_atomically(
      spool::incoming_dir(f.spool, "clients") / "20260101T000000.000000Z_r9_sum_00000000.json",
      R"({"ingestd_spool":1,"kind":"run_summary","entity":"clients","run_id":"r9",)"
      R"("fetched_at":"2026-01-01T00:00:00Z","summary":{"status":"done","started_at":"2026-01-01T00:00:00Z"}})");
  auto t = f.stage();
  CHECK(t.files_quarantined == 1);
  CHECK(f.count("SELECT count(*) FROM sync_status WHERE stage = 'fetcher'") == 0);
  CHECK(f.get("SELECT error FROM ingestd_quarantine").find("status 'done'") != std::string::npos);
}

TEST_CASE("the stager and the reconciler record their runs with their counts") {
  Fixture f;
  auto fetched = std::chrono::system_clock::now();
  test::spool_page(f.spool, "timeline_entries", {entry(1, "pno_1"), entry(2, "pno_2")}, 1, "r1");
  test::spool_page(f.spool, "timeline_entries", {entry(1, "pno_1"), "[1]"}, 2, "r1");
  test::spool_run_end(f.spool, "timeline_entries", "r1", "incremental", 2, 4);
  f.stage();
  // records read 4, new rows 3 (one duplicate), 1 flagged (not an object)
  CHECK(f.get("SELECT concat_ws('|', status, records_fetched, records_processed, "
              "records_skipped, records_failed, performance_metrics->>'files', "
              "performance_metrics->>'run_ends', host) FROM sync_status WHERE stage = 'stager'") ==
        "success|4|3|1|1|2|1|" + StageRuns::host());

  reconciler::Totals t;
  REQUIRE(reconciler::run(f.cfg, f.stop, {reconciler::RunMode::until_empty, ""}, &t) == 0);
  CHECK(t.applied == 2);
  CHECK(f.get("SELECT concat_ws('|', status, records_processed, records_skipped, "
              "records_failed, performance_metrics->>'applied', "
              "performance_metrics->'placeholders'->>'pianos', "
              "performance_metrics->'placeholders'->>'users', data_freshness_score) FROM "
              "sync_status WHERE stage = 'reconciler' AND sync_type = 'timeline_entries'") ==
        "success|2|1|0|2|2|1|100");
  // error rate: the skipped row is invalid data (1 of 3)
  CHECK(f.get("SELECT round(error_rate::numeric, 2) FROM sync_status WHERE stage = "
              "'reconciler'") == "33.33");
  (void)fetched;
}

TEST_CASE("a run left running by a dead process is closed as failed at the next start") {
  Fixture f;
  auto insert = [&](const std::string& run, pid_t pid, const std::string& host) {
    auto conn = f.db.connect();
    conn.query(
        "INSERT INTO sync_status (sync_type, stage, run_id, started_at, status, host, pid) "
        "VALUES ('clients', 'stager', $1, now() - interval '1 hour', 'running', $2, $3)",
        run, host, static_cast<std::int64_t>(pid));
  };
  insert("dead", dead_pid(), StageRuns::host());
  insert("alive", 1, StageRuns::host());          // pid 1 lives: another process's run
  insert("elsewhere", dead_pid(), "other-host");  // cannot be judged from here
  f.stage();
  CHECK(f.get("SELECT concat_ws('|', status, completed_at IS NOT NULL, error_summary->>'error') "
              "FROM sync_status WHERE run_id = 'dead'") ==
        "failed|t|process ended without closing the run (crash or kill)");
  CHECK(f.get("SELECT status FROM sync_status WHERE run_id = 'alive'") == "running");
  CHECK(f.get("SELECT status FROM sync_status WHERE run_id = 'elsewhere'") == "running");
}

TEST_CASE("a running summary staged after its run_end still reports the run finished") {
  // Two stager workers can stage the marker before the summary written before it.
  Fixture f;
  auto t0 = std::chrono::system_clock::now() - 1min;
  test::spool_page(f.spool, "clients", {client(1), client(2)}, 1, "r1");
  test::spool_run_end(f.spool, "clients", "r1", "incremental", 1, 2);
  f.stage();
  f.summary("r1", "running", t0);
  f.stage();
  CHECK(f.get("SELECT concat_ws('|', status, records_fetched, completed_at IS NOT NULL) FROM "
              "sync_status WHERE stage = 'fetcher' AND run_id = 'r1'") == "success|2|t");
}
