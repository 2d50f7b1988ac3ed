#include "monitor/snapshot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "core/config.hpp"
#include "core/pg.hpp"
#include "monitor/run_history.hpp"

namespace ingestd::monitor {
namespace {

constexpr const char* kStages[] = {"fetcher", "stager", "reconciler"};
constexpr std::size_t kMaxErrorChars = 300;  // a reason line stays readable

std::optional<SysTime> epoch_at(const pg::Result& r, int row, int col) {
  if (r.is_null(row, col)) return std::nullopt;
  double seconds = std::strtod(std::string(r.get(row, col)).c_str(), nullptr);
  return SysTime{
      std::chrono::duration_cast<SysTime::duration>(std::chrono::duration<double>(seconds))};
}

double number(const pg::Result& r, int row, int col) {
  return r.is_null(row, col) ? 0 : std::strtod(std::string(r.get(row, col)).c_str(), nullptr);
}

std::int64_t integer(const pg::Result& r, int row, int col) {
  return r.is_null(row, col) ? 0 : r.get_int(row, col);
}

std::string text(const pg::Result& r, int row, int col) {
  return r.is_null(row, col) ? std::string() : std::string(r.get(row, col));
}

// The newest run of each stage, its newest success, the failures of the last 24 hours and the
// 'running' rows: every lateral walks the (sync_type, stage, started_at) index or the partial
// running index, so the cost does not grow with the table's history.
constexpr const char* kLatestSql = R"(
SELECT e.entity, s.stage, n.status, n.run_id, n.error, d.failed, d.error, r.running, r.stale,
       extract(epoch FROM ok.completed_at)
  FROM unnest($1::text[]) AS e(entity)
 CROSS JOIN unnest(ARRAY['fetcher', 'stager', 'reconciler']) AS s(stage)
  LEFT JOIN LATERAL (
       SELECT status, run_id, error_summary->>'error' AS error FROM sync_status
        WHERE sync_type = e.entity AND stage = s.stage
        ORDER BY started_at DESC LIMIT 1) n ON true
  LEFT JOIN LATERAL (
       SELECT completed_at FROM sync_status
        WHERE sync_type = e.entity AND stage = s.stage AND status = 'success'
        ORDER BY started_at DESC LIMIT 1) ok ON true
 CROSS JOIN LATERAL (
       SELECT count(*) AS failed,
              (array_agg(error_summary->>'error' ORDER BY started_at DESC))[1] AS error
         FROM sync_status
        WHERE sync_type = e.entity AND stage = s.stage AND status = 'failed'
          AND started_at > now() - interval '24 hours') d
 CROSS JOIN LATERAL (
       SELECT count(*) AS running,
              count(*) FILTER (WHERE heartbeat_at < now() - $2::interval) AS stale
         FROM sync_status
        WHERE sync_type = e.entity AND stage = s.stage AND status = 'running') r)";

constexpr const char* kQuarantineSql = R"(
SELECT entity, count(*) FROM ingestd_quarantine
 WHERE resolved_at IS NULL AND entity = ANY($1::text[]) GROUP BY entity)";

// The freshness time f that the FROM item `source` yields, its age (clamped at 0: a fetcher's clock
// may run ahead of the database's; NULL when f is) and its score (0 when f is NULL).
std::string freshness_sql(std::string_view source) {
  return fmt::format(
      "SELECT extract(epoch FROM f), a.age, ingestd_freshness_score(a.age, $2::float8)"
      " FROM {}, LATERAL (SELECT CASE WHEN f IS NOT NULL"
      " THEN greatest(0, extract(epoch FROM now() - f))::float8 END AS age) AS a",
      source);
}

// A reconciled entity: sql/007's definition (through to production).
const std::string kFreshReconciledSql = freshness_sql("ingestd_fresh_as_of($1) AS f");

// A staged-only entity's rows are never processed, so ingestd_fresh_as_of() would wait for
// them forever: its data is fresh as of the newest fetch run whose pages are all staged.
const std::string kFreshStagedSql = freshness_sql(R"(
       (SELECT (SELECT r.completed_at FROM ingestd_fetch_runs r
                 WHERE r.entity = $1
                   AND (SELECT count(DISTINCT l.page) FROM ingestd_spool_ledger l
                         WHERE l.entity = r.entity AND l.run_id = r.run_id
                           AND l.outcome = 'loaded') >= r.pages
                 ORDER BY r.completed_at DESC LIMIT 1)) AS x(f))");

void read_entity(pg::Connection& conn, const config::Entity& cfg, EntityState& e) {
  const auto period = std::to_string(std::chrono::duration<double>(cfg.every).count());
  auto fresh = conn.query(e.reconciled ? kFreshReconciledSql : kFreshStagedSql, cfg.name, period);
  if (fresh.rows() == 1) {
    e.fresh_as_of = epoch_at(fresh, 0, 0);
    e.freshness_seconds = e.fresh_as_of ? number(fresh, 0, 1) : -1;
    e.freshness_score = number(fresh, 0, 2);
  }
  if (!e.reconciled) return;  // nothing processes its staging rows: no backlog to count
  // Both counts walk partial indexes (stg_<e>_due: NOT processed, stg_<e>_dead), so they cost
  // the backlog's size, not the table's.
  const auto stg = pg::Identifier("stg_" + cfg.name).quoted();
  auto backlog = conn.exec(
      fmt::format("SELECT count(*) FILTER (WHERE next_attempt_at <= now()),"
                  " count(*) FILTER (WHERE next_attempt_at > now()),"
                  " extract(epoch FROM min(fetched_at) FILTER (WHERE next_attempt_at <= now())),"
                  " (SELECT count(*) FROM {0} WHERE outcome = 'dead')"
                  " FROM {0} WHERE NOT processed",
                  stg));
  e.due = integer(backlog, 0, 0);
  e.retrying = integer(backlog, 0, 1);
  e.oldest_due_fetched_at = epoch_at(backlog, 0, 2);
  e.dead = integer(backlog, 0, 3);
  auto open = conn.exec(fmt::format("SELECT count(*) FROM {} WHERE is_placeholder",
                                    pg::Identifier(cfg.table.name).quoted()));
  e.placeholders_open = integer(open, 0, 0);
}

void read_latest(pg::Connection& conn, const std::string& names,
                 std::map<std::string, EntityState*>& by_name) {
  auto latest = conn.query(
      kLatestSql, names, fmt::format("{} seconds", std::chrono::seconds(kStaleHeartbeat).count()));
  for (int i = 0; i < latest.rows(); ++i) {
    auto* e = by_name.at(std::string(latest.get(i, 0)));
    auto stage = e->stages.find(std::string(latest.get(i, 1)));
    if (stage == e->stages.end()) continue;  // reconciler rows of a staged-only entity
    auto& s = stage->second;
    s.last_status = text(latest, i, 2);
    s.last_run_id = text(latest, i, 3);
    s.last_error = s.last_status == "failed" ? text(latest, i, 4) : text(latest, i, 6);
    if (s.last_error.size() > kMaxErrorChars) {
      std::size_t cut = kMaxErrorChars;  // not inside a UTF-8 sequence
      while (cut > 0 && (static_cast<unsigned char>(s.last_error[cut]) & 0xC0) == 0x80) --cut;
      s.last_error = s.last_error.substr(0, cut) + "...";
    }
    s.failed_24h = integer(latest, i, 5);
    s.running = integer(latest, i, 7);
    s.stale = integer(latest, i, 8);
    s.last_success = epoch_at(latest, i, 9);
    e->failures_24h += s.failed_24h;
  }
  auto quarantined = conn.query(kQuarantineSql, names);
  for (int i = 0; i < quarantined.rows(); ++i)
    by_name.at(std::string(quarantined.get(i, 0)))->quarantined = integer(quarantined, i, 1);
}

// Regular files not starting with '.' in incoming/<entity> (docs/SPOOL.md): what the stager
// has not taken yet. A missing folder is an empty one.
std::int64_t spool_waiting(const std::filesystem::path& spool, const std::string& entity) {
  std::error_code ec;
  std::int64_t n = 0;
  for (std::filesystem::directory_iterator it(spool / "incoming" / entity, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (it->path().filename().string().starts_with('.')) continue;
    std::error_code type_ec;
    if (it->is_regular_file(type_ec)) ++n;
  }
  return n;
}

std::string plural(std::int64_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

// Where a stale entity is stuck, judged from the backlog in front of each stage.
std::string stuck_hint(const EntityState& e, SysTime now) {
  if (e.due + e.retrying > 0) {
    std::string oldest;
    if (e.oldest_due_fetched_at)
      oldest = fmt::format(
          ", oldest fetched {} ago",
          format_age(std::chrono::duration<double>(now - *e.oldest_due_fetched_at).count()));
    return fmt::format("{} wait in stg_{}{}: is the reconciler running?",
                       plural(e.due + e.retrying, "row", "rows"), e.entity, oldest);
  }
  if (e.spool_waiting > 0)
    return fmt::format("{} wait in the spool: is the stager running?",
                       plural(e.spool_waiting, "file", "files"));
  return "no newer complete fetch run: is the fetcher running and the upstream reachable?";
}

}  // namespace

const char* to_string(Health h) {
  switch (h) {
    case Health::healthy:
      return "healthy";
    case Health::degraded:
      return "degraded";
    case Health::failing:
      return "failing";
  }
  return "failing";
}

Health Snapshot::overall() const {
  Health worst = Health::healthy;
  for (const auto& e : entities) worst = std::max(worst, e.health);
  return worst;
}

std::string format_age(double seconds) {
  if (!(seconds >= 0)) return "never";
  auto s = static_cast<std::int64_t>(seconds);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m", s / 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

// The health rules, in one place (monitor/README.md repeats them for operators).
//
// failing:  the monitor cannot read the entity's tables;
//           the newest run of any stage failed;
//           the entity has never been fresh (no fetch run has gone all the way through);
//           freshness_score < monitor.failing_below.
// degraded: dead staging rows (outcome 'dead');
//           unresolved quarantined spool files;
//           a 'running' row whose heartbeat is older than kStaleHeartbeat (its writer is gone);
//           freshness_score < monitor.degraded_below.
// Every rule that holds adds one reason line saying what is wrong and what to do.
void judge(EntityState& e, const config::Config& config, SysTime now) {
  e.reasons.clear();
  e.health = Health::healthy;
  auto add = [&e](Health h, std::string reason) {
    e.health = std::max(e.health, h);
    e.reasons.push_back(std::move(reason));
  };
  if (!e.error.empty()) {
    add(Health::failing,
        fmt::format("the monitor cannot read its tables ({}): has `ingestd migrate` run since "
                    "the entity was added?",
                    e.error));
    return;  // the other fields were not read
  }
  for (const auto& [stage, s] : e.stages)
    if (s.last_status == "failed")
      add(Health::failing,
          fmt::format("the last {} run failed ({}): see the {}'s log; it retries on its next "
                      "cycle",
                      stage, s.last_error.empty() ? "no error recorded" : s.last_error, stage));
  if (!e.fresh_as_of) {
    if (e.reconciled || e.freshness_score < config.monitor_failing_below)
      add(Health::failing,
          fmt::format("never synced: no fetch run has reached {} yet; {}",
                      e.reconciled ? "production" : "staging", stuck_hint(e, now)));
  } else if (e.freshness_score < config.monitor_degraded_below) {
    add(e.freshness_score < config.monitor_failing_below ? Health::failing : Health::degraded,
        fmt::format("data is {} old (freshness {:.0f} < {:.0f}): {}",
                    format_age(e.freshness_seconds), e.freshness_score,
                    e.freshness_score < config.monitor_failing_below
                        ? config.monitor_failing_below
                        : config.monitor_degraded_below,
                    stuck_hint(e, now)));
  }
  if (e.dead > 0)
    add(Health::degraded,
        fmt::format("{}: ingestd requeue --entity {} --dead after fixing the cause "
                    "(last_error in stg_{})",
                    plural(e.dead, "dead row", "dead rows"), e.entity, e.entity));
  if (e.quarantined > 0)
    add(Health::degraded,
        fmt::format("{} quarantined (see ingestd_quarantine and quarantine/{}/ in the spool): "
                    "repair and re-spool under a new name, then set resolved_at",
                    plural(e.quarantined, "spool file", "spool files"), e.entity));
  for (const auto& [stage, s] : e.stages)
    if (s.stale > 0)
      add(Health::degraded,
          fmt::format("{} not updated for over {} minutes (its process is gone?): restart "
                      "the {}; it closes such runs as failed",
                      plural(s.stale, stage + " run", stage + " runs"), kStaleHeartbeat.count(),
                      stage));
}

Snapshot take(pg::Connection& conn, const config::Config& config, RunHistory* history) {
  Snapshot snap;
  std::map<std::string, EntityState*> by_name;
  std::vector<pg::Param> names;
  snap.entities.reserve(config.entities.size());
  for (const auto& cfg : config.entities) {
    auto& e = snap.entities.emplace_back();
    e.entity = cfg.name;
    e.reconciled = !cfg.table.name.empty();
    for (const char* stage : kStages)
      if (e.reconciled || std::string_view(stage) != "reconciler") e.stages[stage];
    names.push_back(cfg.name);
  }
  for (auto& e : snap.entities) by_name[e.entity] = &e;

  // One snapshot of the data: REPEATABLE READ makes every count below agree with the others.
  pg::Transaction tx(conn);
  conn.exec_script("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  auto now = conn.exec("SELECT extract(epoch FROM now())");
  snap.taken_at = epoch_at(now, 0, 0).value_or(std::chrono::system_clock::now());
  const auto name_list = pg::array_literal(names);
  read_latest(conn, name_list, by_name);
  if (history) read_totals(conn, name_list, *history, snap);
  for (std::size_t i = 0; i < config.entities.size(); ++i) {
    auto& e = snap.entities[i];
    // A missing or broken table of one entity (added to the config, not yet migrated) is that
    // entity's failure, not the monitor's.
    conn.exec_script("SAVEPOINT entity");
    try {
      read_entity(conn, config.entities[i], e);
      conn.exec_script("RELEASE SAVEPOINT entity");
    } catch (const pg::Error& err) {
      if (err.connection_lost()) throw;
      conn.exec_script("ROLLBACK TO SAVEPOINT entity");
      e.error = err.what();
    }
  }
  tx.commit();

  for (auto& e : snap.entities) {
    e.spool_waiting = spool_waiting(config.spool_dir, e.entity);
    judge(e, config, snap.taken_at);
  }
  return snap;
}

}  // namespace ingestd::monitor
