// What the monitor knows about each entity at one moment, read from the database (and the
// spool directory). /metrics, /health, the alerts and `ingestd status` are all views of one
// Snapshot, so they cannot disagree.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/time.hpp"

namespace ingestd {
namespace config {
struct Config;
}
namespace pg {
class Connection;
}
}  // namespace ingestd

namespace ingestd::monitor {

enum class Health { healthy, degraded, failing };
[[nodiscard]] const char* to_string(Health h);

// A 'running' row whose writer has not touched it for this long belongs to a process that is
// gone (writers refresh heartbeat_at at least every 30 s).
inline constexpr std::chrono::minutes kStaleHeartbeat{5};

// Upper bounds (seconds) of the run duration histogram: a busy spell of the stager or
// reconciler lasts seconds to minutes, a full fetch up to hours.
inline constexpr std::array<double, 12> kRunDurationBuckets = {0.1, 0.5, 1,   5,    15,   30,
                                                               60,  300, 900, 1800, 3600, 10800};

// All-time totals of one stage's sync_status rows. Rows are never deleted, so these only
// grow: /metrics exports them as counters.
struct RunTotals {
  std::int64_t runs_success = 0, runs_failed = 0;
  std::int64_t records_fetched = 0, records_processed = 0, records_skipped = 0, records_failed = 0;
  // Completed runs (success or failed): cumulative counts per kRunDurationBuckets bound.
  std::array<std::int64_t, kRunDurationBuckets.size()> duration_le{};
  std::int64_t duration_count = 0;
  double duration_sum_seconds = 0;
  RunTotals& operator+=(const RunTotals& other);
};

// The newest sync_status rows of one stage for one entity (and its totals, see RunHistory).
struct StageState : RunTotals {
  std::optional<SysTime> last_success;  // completed_at of the newest successful run
  std::string last_status;              // status of the newest run ("" when none)
  std::string last_run_id;
  std::string last_error;       // error_summary->>'error' of the newest failed run
  std::int64_t failed_24h = 0;  // runs that failed in the last 24 hours
  std::int64_t running = 0;     // rows still 'running'
  std::int64_t stale = 0;       // of those, rows whose heartbeat is older than kStaleHeartbeat
};

struct EntityState {
  std::string entity;
  bool reconciled = false;  // has a production table
  // Why the monitor could not read this entity's tables (e.g. stg_<e> missing because
  // `ingestd migrate` has not run since the entity was added); "" when it could.
  std::string error;
  std::map<std::string, StageState> stages;  // "fetcher", "stager", "reconciler"

  // Freshness (sql/007: ingestd_fresh_as_of, ingestd_freshness_score): the completion time of
  // the newest fetch run whose records are all through the pipeline. Age = now - that time.
  // The score is 100 while the age is within two schedule periods (entity.every), then
  // 100 * 2 * every / age; 0 when never synced.
  std::optional<SysTime> fresh_as_of;
  double freshness_seconds = -1;  // -1 when never
  double freshness_score = 0;

  // Staging backlog.
  std::int64_t due = 0;       // NOT processed AND next_attempt_at <= now()
  std::int64_t retrying = 0;  // NOT processed AND next_attempt_at > now()
  std::int64_t dead = 0;      // outcome = 'dead'
  std::optional<SysTime> oldest_due_fetched_at;

  std::int64_t placeholders_open = 0;     // is_placeholder rows in this entity's table
  std::int64_t placeholders_created = 0;  // sum over reconciler sync_status rows (totals)
  std::int64_t spool_waiting = 0;         // files in <spool>/incoming/<entity>
  std::int64_t quarantined = 0;           // ingestd_quarantine rows not resolved

  // Totals (see RunHistory). From the fetcher's rows, all time: requests by status class
  // (metrics::status_class of error_summary.statuses) and performance_metrics.throttled_seconds.
  std::map<std::string, std::int64_t> upstream_requests;
  double throttled_seconds = 0;

  std::int64_t failures_24h = 0;  // failed runs of any stage in 24 h

  Health health = Health::healthy;
  std::vector<std::string> reasons;  // why not healthy, one line each, operator's words
};

struct Snapshot {
  SysTime taken_at{};
  std::vector<EntityState> entities;  // config order
  bool has_totals = false;  // the all-time totals were read (take() was given a RunHistory)
  [[nodiscard]] Health overall() const;  // the worst entity's
};

// Keeps the all-time totals cheap to read at every poll. sync_status grows by a row per run
// (about a million a year for a handful of entities), too many to sum every 15 s. A row that
// started more than kSettleAfter ago is finished and no longer changes, so the sums of those
// rows are read once and kept here; each take() reads only the newer rows, through the
// (sync_type, stage, started_at) index. A row that breaks the assumption (a fetcher summary
// delivered days late, a crashed run closed days later) is counted by the next monitor start.
class RunHistory {
 public:
  static constexpr std::chrono::hours kSettleAfter{48};
  RunHistory();
  ~RunHistory();
  RunHistory(const RunHistory&) = delete;
  RunHistory& operator=(const RunHistory&) = delete;
  struct Impl;
  [[nodiscard]] Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Reads everything in one read-only transaction. Throws pg::Error when the database fails.
// With a RunHistory (the monitor keeps one) it also reads the all-time totals; without one
// (`ingestd status`) they stay 0 and has_totals false.
[[nodiscard]] Snapshot take(pg::Connection& conn, const config::Config& config,
                            RunHistory* history = nullptr);

// The health rules (monitor/README.md, "Health"): sets e.health and e.reasons from the other
// fields. take() calls it; exposed so the rules can be tested without a database.
// `now` is the snapshot's time.
void judge(EntityState& e, const config::Config& config, SysTime now);

// "45s", "12m", "3h05m", "2d04h": an age for people.
[[nodiscard]] std::string format_age(double seconds);

}  // namespace ingestd::monitor
