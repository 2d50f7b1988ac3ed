#include "reconciler/full_runs.hpp"

#include <fmt/format.h>

#include "core/config.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"

namespace ingestd::reconciler {

FullRunResult finalize_full_runs(pg::Connection& conn, const config::Config& cfg,
                                 const config::Entity& e) {
  FullRunResult result;
  // Cheap test first, outside a transaction: most turns have no pending full run.
  auto pending = conn.query(
      "SELECT run_id, pages, completed_at FROM ingestd_fetch_runs WHERE entity = $1 AND mode = "
      "'full' AND reconciled_at IS NULL ORDER BY completed_at DESC",
      e.name);
  if (pending.rows() == 0) return result;

  std::string staging = pg::Identifier("stg_" + e.name).quoted();
  std::string table = pg::Identifier(e.table.name).quoted();
  pg::Transaction txn(conn);
  // Every statement below sets a whole table against a whole run's id list. Their statistics
  // are stale by nature here: the ids were inserted moments ago, and the table may have been
  // analyzed while its rows were still placeholders. Estimating a few rows on each side, the
  // planner then picks a nested loop that rescans the run's ids for every row: quadratic
  // (tests/chaos/02: 40 s for 22k clients, many minutes for 110k rows). Hash joins stay linear.
  conn.query("SET LOCAL enable_nestloop = off");
  {
    auto locked =
        conn.query("SELECT pg_try_advisory_xact_lock(hashtext('ingestd.full_run.' || $1))", e.name);
    if (locked.get(0, 0) != "t") return result;  // another worker is at it
    // A run_end staged late, after a full run that started later was applied: the late run
    // knows less than that one (and its id list may be gone). Settled without acting.
    auto late = conn.query(
        "WITH starts AS (SELECT run_id, min(fetched_at) AS started FROM ingestd_spool_ledger "
        "WHERE entity = $1 AND mode = 'full' GROUP BY run_id), newest AS (SELECT "
        "max(coalesce(s.started, r.completed_at)) AS started FROM ingestd_fetch_runs r LEFT JOIN "
        "starts s USING (run_id) WHERE r.entity = $1 AND r.mode = 'full' AND r.deletion IN "
        "('applied', 'refused')) UPDATE ingestd_fetch_runs r SET reconciled_at = now(), deletion "
        "= 'superseded' FROM newest WHERE r.entity = $1 AND r.mode = 'full' AND r.reconciled_at "
        "IS NULL AND coalesce((SELECT started FROM starts s WHERE s.run_id = r.run_id), "
        "r.completed_at) < newest.started RETURNING r.run_id",
        e.name);
    for (int i = 0; i < late.rows(); ++i) {
      conn.query("DELETE FROM ingestd_full_run_ids WHERE entity = $1 AND run_id = $2", e.name,
                 std::string(late.get(i, 0)));
      ++result.finalized;
      log::warn("reconciler.full_run_superseded", "entity={} run_id={} reason={}", e.name,
                log::q(late.get(i, 0)), log::q("a newer full run was applied first"));
    }
    for (int i = 0; i < pending.rows(); ++i) {
      std::string run_id(pending.get(i, 0));
      std::int64_t pages = pending.get_int(i, 1);
      std::string completed(pending.get(i, 2));
      auto still = conn.query(
          "SELECT 1 FROM ingestd_fetch_runs WHERE entity = $1 AND run_id = $2 AND reconciled_at "
          "IS NULL",
          e.name, run_id);
      if (still.rows() == 0) continue;
      // Every page staged? (A page written twice after a crash has two files: count pages.)
      auto staged = conn.query(
          "SELECT count(DISTINCT page), min(fetched_at) FROM ingestd_spool_ledger WHERE entity = "
          "$1 AND run_id = $2 AND outcome = 'loaded'",
          e.name, run_id);
      if (staged.get_int(0, 0) < pages) continue;
      std::string started(staged.is_null(0, 1) ? completed : std::string(staged.get(0, 1)));
      // Everything fetched up to the run's end reconciled (rows in backoff hold it back).
      auto waiting = conn.query(
          fmt::format("SELECT 1 FROM {} WHERE NOT processed AND fetched_at <= $1 LIMIT 1", staging),
          completed);
      if (waiting.rows() > 0) continue;

      auto counts = conn.query(
          fmt::format("SELECT count(*), count(*) FILTER (WHERE t.fetched_at < $3 AND f.external_id "
                      "IS NULL) FROM {} t LEFT JOIN (SELECT DISTINCT external_id FROM "
                      "ingestd_full_run_ids WHERE entity = $1 AND run_id = $2) f ON "
                      "f.external_id = t.id WHERE t.deleted_at IS NULL AND NOT t.is_placeholder",
                      table),
          e.name, run_id, started);
      std::int64_t live = counts.get_int(0, 0), missing = counts.get_int(0, 1);
      std::int64_t deleted = 0, undeleted = 0;
      bool refused =
          missing > 0 && static_cast<double>(missing) >
                             cfg.reconciler_max_delete_fraction * static_cast<double>(live);
      if (refused) {
        ++result.refused;
        log::error("reconciler.deletion_refused",
                   "entity={} run_id={} would_delete={} live={} max_delete_fraction={}", e.name,
                   run_id, missing, live, cfg.reconciler_max_delete_fraction);
      } else {
        deleted = conn.query(fmt::format("UPDATE {} t SET deleted_at = now(), synced_at = now() "
                                         "WHERE t.deleted_at IS NULL AND NOT t.is_placeholder AND "
                                         "t.fetched_at < $3 AND NOT EXISTS (SELECT 1 FROM "
                                         "ingestd_full_run_ids f WHERE f.entity = $1 AND f.run_id "
                                         "= $2 AND f.external_id = t.id)",
                                         table),
                             e.name, run_id, started)
                      .affected();
        undeleted = conn.query(fmt::format("UPDATE {} t SET deleted_at = NULL, synced_at = now() "
                                           "FROM (SELECT DISTINCT external_id FROM "
                                           "ingestd_full_run_ids WHERE entity = $1 AND run_id = "
                                           "$2) f WHERE f.external_id = t.id AND t.deleted_at IS "
                                           "NOT NULL",
                                           table),
                               e.name, run_id)
                        .affected();
      }
      conn.query(
          "UPDATE ingestd_fetch_runs SET reconciled_at = now(), deleted = $3, undeleted = $4, "
          "deletion = $5 WHERE entity = $1 AND run_id = $2",
          e.name, run_id, deleted, undeleted, refused ? "refused" : "applied");
      auto older = conn.query(
          "UPDATE ingestd_fetch_runs SET reconciled_at = now(), deletion = 'superseded' WHERE "
          "entity = $1 AND mode = 'full' AND reconciled_at IS NULL AND completed_at < $2 "
          "RETURNING run_id",
          e.name, completed);
      std::vector<pg::Param> done{run_id};
      for (int j = 0; j < older.rows(); ++j) done.push_back(std::string(older.get(j, 0)));
      conn.query("DELETE FROM ingestd_full_run_ids WHERE entity = $1 AND run_id = ANY($2::text[])",
                 e.name, pg::array_literal(done));
      // Full runs that never finished (no run_end) and ended before this one started: their
      // ids can no longer serve.
      conn.query(
          "DELETE FROM ingestd_full_run_ids WHERE entity = $1 AND run_id IN (SELECT run_id FROM "
          "ingestd_spool_ledger WHERE entity = $1 AND mode = 'full' GROUP BY run_id HAVING "
          "max(fetched_at) < $2)",
          e.name, started);
      result.finalized += static_cast<int>(done.size());
      result.deleted += deleted;
      result.undeleted += undeleted;
      log::info("reconciler.full_run_reconciled",
                "entity={} run_id={} deletion={} deleted={} undeleted={} superseded_runs={}",
                e.name, run_id, refused ? "refused" : "applied", deleted, undeleted, older.rows());
      break;  // the newest ready run settles the older ones
    }
  }
  txn.commit();
  return result;
}

}  // namespace ingestd::reconciler
