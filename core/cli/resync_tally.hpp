// What became of one fetch run's records, read from the database, whichever process staged
// and reconciled them (`ingestd resync`, core/cli/resync_command.cpp).
//
// The run's pages (found through the spool ledger, read back from the spool) give the
// content hash of every record fetched. Each hash names exactly one stg_<entity> row: staged
// by this run, or earlier when the same content was already there (then the stager counted
// the record as a duplicate and made no row). That row's outcome, and for applied rows its
// applied_as (sql/008, written by the reconciler's apply statement), say what the record did
// to production. An applied row processed before the resync started was applied by an earlier
// run: the record is unchanged. A content that came twice in the run counts once by what
// happened to it; the repeat changed nothing and counts as unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/config.hpp"

namespace ingestd::pg {
class Connection;
}

namespace ingestd::cli::repair {

// The page files the run wrote (incoming/ or, once staged, archive/). Not the fetcher's page
// count: a run whose last request comes back empty counts that page but writes no file.
[[nodiscard]] std::int64_t written_pages(const config::Config& cfg, const std::string& entity,
                                         const std::string& run_id);

// The ledger's account of the run's pages.
struct Staged {
  std::int64_t files = 0, records = 0, staged = 0, duplicates = 0, flagged = 0;
};
[[nodiscard]] Staged staged(pg::Connection& conn, const std::string& entity,
                            const std::string& run_id);

// The run's distinct contents (md5 hex) and how often each came.
struct Contents {
  std::vector<std::pair<std::string, std::int64_t>> hashes;
  std::int64_t records = 0;
  std::vector<std::string> unreadable;  // ledger pages no longer in the spool
};
[[nodiscard]] Contents read_run(pg::Connection& conn, const config::Config& cfg,
                                const config::Entity& entity, const std::string& run_id);

struct Problem {
  std::string kind;  // skipped | dead | retrying | waiting | missing
  std::string reason;
  std::int64_t rows = 0;
  std::string example;  // an external id
};

struct Tally {
  std::int64_t new_rows = 0;  // includes `filled`
  std::int64_t filled = 0;    // replaced a placeholder
  std::int64_t changed = 0, unchanged = 0, superseded = 0;
  std::int64_t skipped = 0, dead = 0, retrying = 0, waiting = 0, missing = 0;
  std::vector<Problem> problems;  // per kind, most rows first
  [[nodiscard]] std::int64_t failed() const {
    return skipped + dead + retrying + waiting + missing;
  }
};
// `since`: the database's now() when the resync started (text).
[[nodiscard]] Tally tally(pg::Connection& conn, const config::Entity& entity,
                          const Contents& contents, const std::string& since);

// Placeholders still open, created since `since`, that the run's records reference.
[[nodiscard]] std::int64_t placeholders(pg::Connection& conn, const config::Config& cfg,
                                        const config::Entity& entity, const Contents& contents,
                                        const std::string& since);

// A full run's deletions as the reconciler settled them (ingestd_fetch_runs).
struct FullRun {
  bool staged = false;   // its run_end is in ingestd_fetch_runs
  bool settled = false;  // deletions applied, refused or superseded
  std::int64_t deleted = 0, undeleted = 0;
  std::string deletion;                      // applied | refused | superseded
  std::int64_t pages = 0, pages_staged = 0;  // as the run_end counts them; distinct in the ledger
};
[[nodiscard]] FullRun full_run(pg::Connection& conn, const std::string& entity,
                               const std::string& run_id);

// Staging rows of the run not processed yet (cheap: the due index), for the progress line.
[[nodiscard]] std::int64_t unprocessed(pg::Connection& conn, const std::string& entity,
                                       const std::string& run_id);

}  // namespace ingestd::cli::repair
