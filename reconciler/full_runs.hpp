// Deletions from complete full runs (internal to reconciler/).
#pragma once

#include <cstdint>

namespace ingestd {
namespace config {
struct Config;
struct Entity;
}  // namespace config
namespace pg {
class Connection;
}
}  // namespace ingestd

namespace ingestd::reconciler {

struct FullRunResult {
  int finalized = 0;  // runs settled (applied, refused or superseded)
  std::int64_t deleted = 0;
  std::int64_t undeleted = 0;
  int refused = 0;
};

// For the newest full run of `entity` whose run_end is staged, every page of which is staged,
// and whose records (everything fetched up to its end) are all reconciled: soft-deletes the
// live rows it did not see (fetched before it started), undeletes the deleted rows it saw,
// and settles older pending full runs as superseded. An incomplete run is left waiting and
// deletes nothing. One transaction; one finalizer per entity at a time (advisory lock).
FullRunResult finalize_full_runs(pg::Connection& conn, const config::Config& config,
                                 const config::Entity& entity);

}  // namespace ingestd::reconciler
