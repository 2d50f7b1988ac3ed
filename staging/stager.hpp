// The staging loader: spool files -> stg_<entity>, each file exactly once.
// This header is all that main and the tests see of staging/.
#pragma once

#include <cstdint>

namespace ingestd {
class StopToken;
namespace config {
struct Config;
}
}  // namespace ingestd

namespace ingestd::staging {

enum class RunMode {
  forever,      // `ingestd stager`: watch the spool until SIGTERM
  until_empty,  // `ingestd stage --once`: stage what is waiting, then return
};

struct Totals {
  std::int64_t files_loaded = 0;
  std::int64_t files_replayed = 0;  // already in the ledger: archived without loading again
  std::int64_t files_quarantined = 0;
  std::int64_t run_ends = 0;
  std::int64_t run_summaries = 0;  // fetcher run summaries written to sync_status
  std::int64_t records = 0;
  std::int64_t staged = 0;
  std::int64_t duplicates = 0;
  std::int64_t flagged = 0;
  std::int64_t purged = 0;
};

// Runs the stager. A database outage is waited out (backoff, reconnect), never an exit.
// Returns 0 after a clean stop (or, until_empty, once the spool is empty), 1 when an entity
// could not be staged for a reason other than the database being unreachable.
int run(const config::Config& config, const StopToken& stop, RunMode mode,
        Totals* totals = nullptr);

// Deletes processed staging rows older than staging.purge_after, in batches; returns the
// number of rows deleted. Used by run() on its interval and by the tests.
std::int64_t purge(const config::Config& config, const StopToken& stop);

}  // namespace ingestd::staging
