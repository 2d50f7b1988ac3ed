// The sync_status rows of a long-lived stage (stager, reconciler) in one process. The stages
// work continuously, so a "run" is a busy spell: it opens when the process first does work
// for an entity and closes ('success') once no worker of the process has any left for it, or
// ('failed') when the entity fails for a reason other than the database. The fetcher's rows
// come through the spool instead (spool::RunSummary, written by the stager).
//
// Workers report with work()/idle()/failed() (cheap, in memory, thread-safe); one of them
// calls flush() between its transactions, which writes what changed. A row stays 'running'
// while its spell lasts and its heartbeat_at is refreshed at least every kHeartbeat, so a
// reader can tell a live run from one whose process died; the next start of the stage on
// the same host closes such rows as failed (close_abandoned).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/time.hpp"

namespace ingestd::pg {
class Connection;
struct ConnectOptions;
}  // namespace ingestd::pg

namespace ingestd {

class StageRuns {
 public:
  static constexpr std::chrono::seconds kHeartbeat{30};

  struct Counts {
    std::int64_t fetched = 0, processed = 0, skipped = 0, failed = 0;
    std::map<std::string, std::int64_t> perf;          // performance_metrics keys
    std::map<std::string, std::int64_t> placeholders;  // performance_metrics.placeholders
    [[nodiscard]] bool empty() const;
  };

  // `skipped_is_error`: whether records_skipped counts in error_rate (the reconciler's
  // skipped rows are invalid data; the stager's are duplicates). `period`: per entity, the
  // schedule period the freshness score is measured against (closing rows only; empty: none).
  StageRuns(std::string stage, bool skipped_is_error,
            std::map<std::string, std::chrono::milliseconds> freshness_period = {});

  void work(const std::string& entity, int worker, const Counts& delta);
  void idle(const std::string& entity, int worker);
  void failed(const std::string& entity, const std::string& error);

  // Writes the rows that changed (and heartbeats). Throws pg::Error; what it could not write
  // stays pending for the next call.
  void flush(pg::Connection& conn);
  // At shutdown: open runs are closed as success (the work done is done).
  void close_all(pg::Connection& conn);
  // The same on a connection of its own, given at most 2 s (the stop budget is 5 s); when the
  // database is unreachable the rows stay 'running' and the next start closes them.
  void close_at_exit(const pg::ConnectOptions& options);

  // Rows of `stage` left 'running' on this host by a process that no longer exists (or by an
  // earlier life of this pid, e.g. pid 1 in a container) become 'failed'. Returns how many.
  static std::int64_t close_abandoned(pg::Connection& conn, std::string_view stage);

  [[nodiscard]] static const std::string& host();

 private:
  struct Run {
    std::string run_id;
    SysTime started_at{};
    std::optional<SysTime> completed_at;
    std::string status = "running";
    std::string error;
    Counts counts;
    std::uint64_t busy_workers = 0;     // bit per worker
    std::optional<SysTime> idle_since;  // every worker idle since then
    bool dirty = true;
    std::chrono::steady_clock::time_point written{};
  };
  struct Pending {
    std::string entity;
    Run run;
  };

  void write(pg::Connection& conn, const std::string& entity, const Run& run);

  std::string stage_;
  bool skipped_is_error_;
  std::map<std::string, std::chrono::milliseconds> period_;
  std::mutex mu_;
  std::map<std::string, Run> open_;  // entity -> its current spell
  std::vector<Pending> closed_;      // closed, not yet written
  std::uint64_t seq_ = 0;
  std::string id_prefix_;
};

}  // namespace ingestd
