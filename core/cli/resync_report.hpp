// What `ingestd resync` reports and how it prints it: the text table, the --json document and
// the one stderr line that says what failed (core/cli/resync_command.cpp fills it).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/cli/resync_tally.hpp"
#include "core/time.hpp"

namespace ingestd::cli::repair {

struct Report {
  std::string entity;
  std::string mode;  // repair | full
  std::optional<SysTime> from, to;
  std::string run_id;
  bool complete = false;
  std::int64_t fetched = 0, pages = 0;  // as the fetcher counted them
  std::int64_t read = 0;                // records found in the run's staged pages
  bool unreadable_pages = false;
  Staged staged;
  Tally tally;
  std::int64_t placeholders = 0;
  std::optional<FullRun> full;      // --full only
  std::vector<std::string> errors;  // besides the rows' problems (fetch, staging, ...)
  std::int64_t max_attempts = 0;    // reconciler.max_attempts, for the dead rows' line
  std::string timeout;              // --timeout as given
};

// One clause per kind of failure ("5 rows skipped as invalid: <reason> (e.g. <id>)"); empty
// when everything reached production.
[[nodiscard]] std::vector<std::string> failures(const Report& r);
[[nodiscard]] std::string render_text(const Report& r);
[[nodiscard]] std::string render_json(const Report& r, const std::vector<std::string>& failures);

}  // namespace ingestd::cli::repair
