// Protects the monitor's Snapshot (monitor/snapshot.hpp) against a real Postgres: the counts
// read from hand-made staging, sync_status, fetch run and quarantine rows (and the spool), the
// metric series built from them, and the health rules of monitor/README.md: degraded on dead
// rows, quarantined files, a stale 'running' row or middling freshness; failing on a failed
// newest run, stale or never-synced data, or an entity whose tables cannot be read; and back
// to healthy once the cause is fixed.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>

#include "core/migrations.hpp"
#include "monitor/monitor.hpp"
#include "monitor/snapshot.hpp"
#include "reconciler/schema.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
namespace fs = std::filesystem;

namespace {

// clients and pianos are reconciled (pianos -> clients); invoices is staged only. Every
// entity is fetched every 5 minutes: freshness 100 up to 10 minutes, below 50 (degraded)
// after 20, below 20 (failing) after 50.
struct Fixture {
  test::TestDatabase db;
  test::TempDir dir;
  fs::path spool = dir.path() / "spool";
  config::Config cfg;
  pg::Connection conn;
  int files = 0;

  Fixture() : conn(db.connect()) {
    test::ConfigOptions o{db.url(), spool, {"clients", "pianos", "invoices"}};
    o.entity_extra = {{"clients", test::reconciler_tables().at("clients")},
                      {"pianos", test::reconciler_tables().at("pianos")}};
    cfg = test::write_config(dir.path(), o);
    (void)migrations::migrate(conn, cfg);
    REQUIRE(reconciler::ensure_tables(conn, cfg).problems.empty());
  }

  void sql(const std::string& statement) { conn.exec_script(statement); }

  // A fetch run whose one page is staged, completed `ago` before now (an SQL interval).
  void fetch_run(const std::string& entity, const std::string& run, const std::string& ago) {
    sql(fmt::format(
        "INSERT INTO ingestd_spool_ledger (entity, file_name, outcome, run_id, page, bytes) "
        "VALUES ('{0}', 'f{2}', 'loaded', '{1}', 1, 10);"
        "INSERT INTO ingestd_fetch_runs (entity, run_id, mode, pages, records, completed_at) "
        "VALUES ('{0}', '{1}', 'incremental', 1, 1, now() - interval '{3}')",
        entity, run, ++files, ago));
  }

  // `n` staging rows: state due | retrying | dead | applied.
  void staged(const std::string& entity, int n, const std::string& state) {
    const bool processed = state == "dead" || state == "applied";
    sql(fmt::format(
        "INSERT INTO stg_{0} (raw_data, external_id, content_hash, fetched_at, run_id, ledger_id,"
        " processed, outcome, next_attempt_at)"
        " SELECT '{{}}', 'x' || i, gen_random_uuid(), now(), 'r', 1, {1}, {2}, now() + {3}"
        " FROM generate_series(1, {4}) i",
        entity, processed ? "true" : "false",
        processed ? fmt::format("'{}'", state) : std::string("NULL"),
        state == "retrying" ? "interval '1 hour'" : "interval '-1 second'", n));
  }

  // One sync_status row; `started`/`took` are SQL intervals, `status` running|success|failed.
  void run(const std::string& entity, const std::string& stage, const std::string& run_id,
           const std::string& status, const std::string& started, const std::string& took,
           const std::string& error_summary = "{}", const std::string& performance = "{}",
           const std::string& heartbeat_ago = "0 seconds") {
    sql(fmt::format(
        "INSERT INTO sync_status (sync_type, stage, run_id, started_at, completed_at, status,"
        " records_fetched, records_processed, error_summary, performance_metrics, heartbeat_at)"
        " VALUES ('{0}', '{1}', '{2}', now() - interval '{4}',"
        " CASE WHEN '{3}' = 'running' THEN NULL ELSE now() - interval '{4}' + interval '{5}' END,"
        " '{3}', 10, 7, '{6}', '{7}', now() - interval '{8}')",
        entity, stage, run_id, status, started, took, error_summary, performance, heartbeat_ago));
  }

  // Everything fresh and every newest run successful.
  void all_well() {
    for (const char* e : {"clients", "pianos", "invoices"}) {
      fetch_run(e, fmt::format("ok-{}", e), "1 minute");
      run(e, "fetcher", fmt::format("ok-{}", e), "success", "2 minutes", "30 seconds");
    }
  }

  monitor::RunHistory history;  // as the monitor keeps it, across takes
  monitor::Snapshot take() { return monitor::take(conn, cfg, &history); }
};

const monitor::EntityState& entity(const monitor::Snapshot& s, const std::string& name) {
  for (const auto& e : s.entities)
    if (e.entity == name) return e;
  FAIL("no entity " << name);
  throw std::logic_error("unreachable");
}

bool has_reason(const monitor::EntityState& e, const std::string& needle) {
  for (const auto& r : e.reasons)
    if (r.find(needle) != std::string::npos) return true;
  return false;
}

std::string reasons(const monitor::EntityState& e) {
  std::string all;
  for (const auto& r : e.reasons) all += r + "\n";
  return all;
}

}  // namespace

TEST_CASE("the snapshot counts backlog dead placeholders quarantine spool files and runs") {
  Fixture f;
  f.all_well();
  f.staged("pianos", 3, "due");
  f.staged("pianos", 2, "retrying");
  f.staged("pianos", 1, "dead");
  f.staged("pianos", 4, "applied");
  f.sql(
      "INSERT INTO clients (id, is_placeholder) VALUES ('c1', true), ('c2', true), ('c3', false)");
  f.sql(
      "INSERT INTO ingestd_quarantine (entity, file_name, error, raw_bytes, bytes, resolved_at)"
      " VALUES ('invoices', 'a', 'not JSON', 'x', 1, NULL), ('invoices', 'b', 'e', 'x', 1, now()),"
      " ('pianos', 'c', 'not JSON', 'x', 1, now())");
  fs::create_directories(f.spool / "incoming" / "pianos");
  for (const char* name : {"p1.json", "p2.json", ".p3.json.tmp"})
    std::ofstream(f.spool / "incoming" / "pianos" / name) << "{}";
  // pianos' fetcher: the all_well run (30 s) plus a failed one and a fast success, each with
  // request statuses; the newest is the success.
  f.run("pianos", "fetcher", "old-fail", "failed", "3 hours", "0.3 seconds",
        R"({"error": "HTTP 503", "statuses": {"503": 2, "200": 1}})");
  f.run("pianos", "fetcher", "newest", "success", "10 seconds", "2 seconds",
        R"({"statuses": {"200": 4, "429": 1}})", R"({"throttled_seconds": 1.5})");
  f.run("pianos", "reconciler", "h:1:1", "success", "5 minutes", "40 seconds", "{}",
        R"({"placeholders": {"clients": 2}})");
  f.run("pianos", "stager", "h:1:1", "running", "1 minute", "0 seconds");

  auto snap = f.take();
  REQUIRE(snap.entities.size() == 3);
  const auto& p = entity(snap, "pianos");
  CHECK(p.error.empty());
  CHECK(p.reconciled);
  CHECK(p.due == 3);
  CHECK(p.retrying == 2);
  CHECK(p.dead == 1);
  CHECK(p.oldest_due_fetched_at.has_value());
  CHECK(p.spool_waiting == 2);
  CHECK(p.quarantined == 0);
  CHECK(p.placeholders_open == 0);
  CHECK(p.stages.size() == 3);
  const auto& fetcher = p.stages.at("fetcher");
  CHECK(fetcher.last_status == "success");
  CHECK(fetcher.last_run_id == "newest");
  CHECK(fetcher.runs_success == 2);
  CHECK(fetcher.runs_failed == 1);
  CHECK(fetcher.failed_24h == 1);
  CHECK(fetcher.last_error == "HTTP 503");
  CHECK(fetcher.records_fetched == 30);
  CHECK(fetcher.duration_count == 3);
  CHECK(fetcher.duration_sum_seconds == doctest::Approx(32.3));
  CHECK(fetcher.duration_le[0] == 0);  // <= 0.1 s
  CHECK(fetcher.duration_le[1] == 1);  // <= 0.5 s: the 0.3 s run
  CHECK(fetcher.duration_le[3] == 2);  // <= 5 s: + the 2 s run
  CHECK(fetcher.duration_le[5] == 3);  // <= 30 s: + the 30 s run
  CHECK(p.upstream_requests.at("2xx") == 5);
  CHECK(p.upstream_requests.at("429") == 1);
  CHECK(p.upstream_requests.at("5xx") == 2);
  CHECK(p.throttled_seconds == doctest::Approx(1.5));
  CHECK(p.stages.at("stager").running == 1);
  CHECK(p.stages.at("stager").stale == 0);
  CHECK(p.stages.at("stager").last_status == "running");
  CHECK(p.stages.at("reconciler").last_success.has_value());
  CHECK(p.failures_24h == 1);

  const auto& c = entity(snap, "clients");
  CHECK(c.placeholders_open == 2);
  CHECK(c.placeholders_created == 2);  // counted by pianos' reconciler run, for clients

  const auto& inv = entity(snap, "invoices");
  CHECK_FALSE(inv.reconciled);
  CHECK(inv.stages.count("reconciler") == 0);
  CHECK(inv.quarantined == 1);
  CHECK(inv.fresh_as_of.has_value());  // from its staged run: nothing processes its rows
  CHECK(inv.freshness_score == 100);

  // The views carry the same figures.
  auto metrics = monitor::snapshot_metrics(&snap);
  INFO(metrics);
  CHECK(metrics.find("ingestd_staging_backlog{entity=\"pianos\",state=\"due\"} 3\n") !=
        std::string::npos);
  CHECK(metrics.find("ingestd_staging_backlog{entity=\"pianos\",state=\"retrying\"} 2\n") !=
        std::string::npos);
  CHECK(metrics.find("ingestd_staging_backlog{entity=\"pianos\",state=\"dead\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find(
            "ingestd_runs_total{entity=\"pianos\",stage=\"fetcher\",status=\"failed\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("ingestd_run_duration_seconds_bucket{entity=\"pianos\",stage=\"fetcher\","
                     "le=\"5\"} 2\n") != std::string::npos);
  CHECK(metrics.find("ingestd_run_upstream_requests_total{entity=\"pianos\",status=\"5xx\"} "
                     "2\n") != std::string::npos);
  CHECK(metrics.find("ingestd_placeholders_open{entity=\"clients\"} 2\n") != std::string::npos);
  CHECK(metrics.find("ingestd_quarantined_files{entity=\"invoices\"} 1\n") != std::string::npos);
  CHECK(metrics.find("ingestd_spool_files_waiting{entity=\"pianos\"} 2\n") != std::string::npos);
  CHECK(metrics.find("ingestd_staging_backlog{entity=\"invoices\"") == std::string::npos);
  auto health = monitor::health_json(snap);
  CHECK(health.find("\"records_pending\":5,\"dead\":1") != std::string::npos);
}

TEST_CASE("health turns degraded on dead rows and quarantine and recovers when fixed") {
  Fixture f;
  f.all_well();
  auto snap = f.take();
  for (const auto& e : snap.entities)
    CHECK_MESSAGE(e.health == monitor::Health::healthy, reasons(e));
  CHECK(snap.overall() == monitor::Health::healthy);

  f.staged("pianos", 3, "dead");
  snap = f.take();
  const auto& p = entity(snap, "pianos");
  CHECK(p.health == monitor::Health::degraded);
  CHECK(has_reason(p, "3 dead rows: ingestd requeue --entity pianos --dead"));
  CHECK(entity(snap, "clients").health == monitor::Health::healthy);  // per entity
  CHECK(snap.overall() == monitor::Health::degraded);

  // What `ingestd requeue` and a successful retry leave behind.
  f.sql("UPDATE stg_pianos SET outcome = 'applied' WHERE outcome = 'dead'");
  CHECK(entity(f.take(), "pianos").health == monitor::Health::healthy);

  f.sql(
      "INSERT INTO ingestd_quarantine (entity, file_name, error, raw_bytes, bytes)"
      " VALUES ('invoices', 'a', 'not JSON', 'x', 1)");
  snap = f.take();
  CHECK(entity(snap, "invoices").health == monitor::Health::degraded);
  CHECK(has_reason(entity(snap, "invoices"), "1 spool file quarantined"));
  f.sql("UPDATE ingestd_quarantine SET resolved_at = now()");
  CHECK(f.take().overall() == monitor::Health::healthy);
}

TEST_CASE("health turns failing on a failed newest run and recovers with the next success") {
  Fixture f;
  f.all_well();
  f.run("clients", "reconciler", "h:1:1", "failed", "30 seconds", "1 second",
        R"({"error": "permission denied for table clients"})");
  auto snap = f.take();
  const auto& c = entity(snap, "clients");
  CHECK(c.health == monitor::Health::failing);
  CHECK(has_reason(c, "the last reconciler run failed (permission denied for table clients)"));
  CHECK(snap.overall() == monitor::Health::failing);
  CHECK(monitor::status_text(snap).find("Actions required:\n  clients: the last reconciler") !=
        std::string::npos);

  f.run("clients", "reconciler", "h:1:2", "success", "10 seconds", "1 second");
  snap = f.take();
  CHECK_MESSAGE(entity(snap, "clients").health == monitor::Health::healthy,
                reasons(entity(snap, "clients")));
  CHECK(entity(snap, "clients").failures_24h == 1);  // still counted, no longer alarming
  CHECK(monitor::status_text(snap).find("No action required.") != std::string::npos);
}

TEST_CASE("freshness degrades then fails as data ages and recovers with a new complete run") {
  Fixture f;
  f.all_well();
  // Only invoices' newest complete run ages: 30 minutes is 6 periods, score 100*2*5/30 = 33.
  f.sql(
      "UPDATE ingestd_fetch_runs SET completed_at = now() - interval '30 minutes'"
      " WHERE entity = 'invoices'");
  auto snap = f.take();
  const auto& inv = entity(snap, "invoices");
  CHECK(inv.freshness_score == doctest::Approx(100.0 / 3).epsilon(0.01));
  CHECK(inv.freshness_seconds == doctest::Approx(1800).epsilon(0.01));
  CHECK(inv.health == monitor::Health::degraded);
  CHECK(has_reason(inv, "data is 30m old (freshness 33 < 50)"));

  f.sql(
      "UPDATE ingestd_fetch_runs SET completed_at = now() - interval '2 hours'"
      " WHERE entity = 'invoices'");
  snap = f.take();
  CHECK(entity(snap, "invoices").health == monitor::Health::failing);
  CHECK(has_reason(entity(snap, "invoices"), "(freshness 8 < 20)"));
  CHECK(has_reason(entity(snap, "invoices"), "is the fetcher running"));

  f.fetch_run("invoices", "fresh", "5 seconds");
  CHECK(entity(f.take(), "invoices").health == monitor::Health::healthy);
}

TEST_CASE("a reconciled entity is failing until a fetch run has reached production") {
  Fixture f;
  f.fetch_run("pianos", "r1", "1 minute");
  f.staged("pianos", 2, "due");  // fetched after the run ended: the run is through
  auto snap = f.take();
  CHECK(entity(snap, "pianos").health == monitor::Health::healthy);

  // A run that ended after rows still waiting were fetched is not through yet.
  f.sql("TRUNCATE ingestd_fetch_runs");
  f.sql("UPDATE stg_pianos SET fetched_at = now() - interval '1 hour'");
  f.fetch_run("pianos", "r2", "1 minute");
  snap = f.take();
  const auto& p = entity(snap, "pianos");
  CHECK_FALSE(p.fresh_as_of.has_value());
  CHECK(p.freshness_score == 0);
  CHECK(p.health == monitor::Health::failing);
  CHECK(has_reason(p,
                   "never synced: no fetch run has reached production yet; 2 rows wait in "
                   "stg_pianos, oldest fetched 1h00m ago: is the reconciler running?"));
  CHECK(has_reason(entity(snap, "clients"), "never synced"));
  CHECK(monitor::health_json(snap).find("\"pianos\":{\"last_sync\":null,\"fresh_as_of\":null,"
                                        "\"freshness\":0,\"freshness_seconds\":null") !=
        std::string::npos);

  f.sql("UPDATE stg_pianos SET processed = true, outcome = 'applied'");
  CHECK(entity(f.take(), "pianos").health == monitor::Health::healthy);
}

TEST_CASE("a running row with a stale heartbeat degrades its entity and a live one does not") {
  Fixture f;
  f.all_well();
  f.run("pianos", "stager", "h:1:1", "running", "20 minutes", "0 seconds", "{}", "{}",
        "10 seconds");
  CHECK(entity(f.take(), "pianos").health == monitor::Health::healthy);

  f.run("pianos", "reconciler", "gone:7:1", "running", "20 minutes", "0 seconds", "{}", "{}",
        "6 minutes");
  auto snap = f.take();
  const auto& p = entity(snap, "pianos");
  CHECK(p.stages.at("reconciler").stale == 1);
  CHECK(p.stages.at("stager").stale == 0);
  CHECK(p.health == monitor::Health::degraded);
  CHECK(has_reason(p, "1 reconciler run not updated for over 5 minutes"));
  CHECK(monitor::snapshot_metrics(&snap).find(
            "ingestd_runs_stale{entity=\"pianos\",stage=\"reconciler\"} 1\n") != std::string::npos);

  // The next start of the stage closes it as failed (contract): failing until a run succeeds.
  f.sql("UPDATE sync_status SET status = 'failed', completed_at = now() WHERE run_id = 'gone:7:1'");
  CHECK(entity(f.take(), "pianos").health == monitor::Health::failing);
  f.run("pianos", "reconciler", "h:8:1", "success", "5 seconds", "1 second");
  CHECK(entity(f.take(), "pianos").health == monitor::Health::healthy);
}

TEST_CASE("an entity whose staging table cannot be read fails alone") {
  Fixture f;
  f.all_well();
  f.sql("DROP TABLE stg_pianos");
  auto snap = f.take();
  const auto& p = entity(snap, "pianos");
  CHECK(p.health == monitor::Health::failing);
  CHECK(p.error.find("stg_pianos") != std::string::npos);
  CHECK(has_reason(p, "ingestd migrate"));
  CHECK(entity(snap, "clients").health == monitor::Health::healthy);
  CHECK(entity(snap, "invoices").health == monitor::Health::healthy);
  auto metrics = monitor::snapshot_metrics(&snap);
  CHECK(metrics.find("ingestd_entity_health{entity=\"pianos\"} 2\n") != std::string::npos);
  CHECK(metrics.find("ingestd_freshness_score{entity=\"pianos\"}") == std::string::npos);
}

TEST_CASE("the all-time totals count settled and recent runs exactly once across snapshots") {
  Fixture f;
  f.run("pianos", "fetcher", "old", "success", "5 days", "10 seconds");  // settled
  f.run("pianos", "fetcher", "older", "failed", "30 days", "1 second");  // settled
  f.run("pianos", "fetcher", "recent", "success", "1 hour", "2 seconds");
  auto first = entity(f.take(), "pianos").stages.at("fetcher");
  CHECK(first.runs_success == 2);
  CHECK(first.runs_failed == 1);
  CHECK(first.duration_count == 3);
  CHECK(first.duration_sum_seconds == doctest::Approx(13));

  f.run("pianos", "fetcher", "new", "success", "1 second", "0.5 seconds");
  auto snap = f.take();
  auto second = entity(snap, "pianos").stages.at("fetcher");
  CHECK(second.runs_success == 3);
  CHECK(second.runs_failed == 1);
  CHECK(second.records_fetched == 40);
  CHECK(second.duration_le[1] == 1);  // <= 0.5 s: the new run

  monitor::RunHistory fresh;  // a restarted monitor reads everything again: same totals
  auto again = entity(monitor::take(f.conn, f.cfg, &fresh), "pianos").stages.at("fetcher");
  CHECK(again.runs_success == second.runs_success);
  CHECK(again.duration_le == second.duration_le);

  // `ingestd status` takes no history: no totals, and no counters built from them.
  auto plain = monitor::take(f.conn, f.cfg);
  CHECK_FALSE(plain.has_totals);
  CHECK(entity(plain, "pianos").stages.at("fetcher").last_success.has_value());
  CHECK(monitor::snapshot_metrics(&plain).find("ingestd_runs_total") == std::string::npos);
  CHECK(monitor::snapshot_metrics(&snap).find("ingestd_runs_total") != std::string::npos);
}
