// The reconciler: stg_<entity> -> production tables. This header is all that main and the
// tests see of reconciler/.
#pragma once

#include <cstdint>
#include <string>

namespace ingestd {
class StopToken;
namespace config {
struct Config;
struct Entity;
}  // namespace config
namespace pg {
class Connection;
}
}  // namespace ingestd

namespace ingestd::reconciler {

enum class RunMode {
  forever,      // `ingestd reconciler`: until SIGTERM
  until_empty,  // `ingestd reconcile --once`: until no due row is left, then return
};

struct Options {
  RunMode mode = RunMode::forever;
  std::string only_entity;  // empty: every entity with a table
};

struct Totals {
  std::int64_t batches = 0;
  std::int64_t applied = 0;  // written (new, changed, or unchanged and touched)
  // applied, split as recorded in stg_<entity>.applied_as (sql/008)
  std::int64_t applied_new = 0, applied_filled = 0, applied_changed = 0, applied_unchanged = 0;
  std::int64_t superseded = 0;  // an older version than production's: not written
  std::int64_t skipped = 0;     // invalid, with the reason in last_error
  std::int64_t retried = 0;     // failed for a database reason, back in line later
  std::int64_t dead = 0;        // failed reconciler.max_attempts times
  std::int64_t placeholders = 0;
  std::int64_t fuzzy_links = 0;
  std::int64_t deleted = 0;  // soft-deleted by complete full runs
  std::int64_t undeleted = 0;
  std::int64_t deletions_refused = 0;
};

// Runs reconciler.workers workers. A database outage is waited out; an entity that fails
// backs off without stopping the others. Returns 0 after a clean stop (or, until_empty, once
// nothing is due), 1 when an entity failed for a reason other than the database.
int run(const config::Config& config, const StopToken& stop, const Options& options,
        Totals* totals = nullptr);

enum class Requeue { dead, skipped };
// Puts an entity's dead (or skipped) staging rows back in line with fresh attempts; returns
// how many.
std::int64_t requeue(pg::Connection& conn, const config::Entity& entity, Requeue which);

}  // namespace ingestd::reconciler
