// What the monitor knows about each entity at one moment, read from the database (and the
// spool directory). /metrics, /health, the alerts and `ingestd status` are all views of one
// Snapshot, so they cannot disagree.
#pragma once

#include <cstdint>
#include <map>
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

// The newest sync_status rows of one stage for one entity.
struct StageState {
  std::optional<SysTime> last_success;  // completed_at of the newest successful run
  std::string last_status;              // status of the newest run ("" when none)
  std::string last_run_id;
  std::string last_error;               // error_summary->>'error' of the newest failed run
  std::int64_t failed_24h = 0;          // runs that failed in the last 24 hours
  std::int64_t running = 0;             // rows still 'running'
};

struct EntityState {
  std::string entity;
  bool reconciled = false;  // has a production table
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
  std::int64_t placeholders_created = 0;  // sum over reconciler sync_status rows
  std::int64_t spool_waiting = 0;         // files in <spool>/incoming/<entity>
  std::int64_t quarantined = 0;           // ingestd_quarantine rows not resolved

  std::int64_t failures_24h = 0;  // failed runs of any stage in 24 h

  Health health = Health::healthy;
  std::vector<std::string> reasons;  // why not healthy, one line each, operator's words
};

struct Snapshot {
  SysTime taken_at{};
  std::vector<EntityState> entities;  // config order
  [[nodiscard]] Health overall() const;  // the worst entity's
};

// Reads everything in one read-only transaction. Throws pg::Error when the database fails.
[[nodiscard]] Snapshot take(pg::Connection& conn, const config::Config& config);

}  // namespace ingestd::monitor
