// The fetcher's durable state per entity: <fetcher.state_dir>/<entity>.json and
// <entity>.json.1, two slots written in place in turn (each a JSON document with a sequence
// number and a checksum; the newer whole one counts), after every group of pages is durably
// in the spool. It holds the run in progress (so a crash at
// page k resumes at page k) and the last complete run (whose newest record, minus the
// overlap, is where the next incremental run starts).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "core/time.hpp"

namespace ingestd::fetcher {

enum class Mode { incremental, full, repair };
[[nodiscard]] std::string_view mode_name(Mode m);
[[nodiscard]] std::optional<Mode> parse_mode(std::string_view s);

struct RunState {
  std::string run_id;
  Mode mode = Mode::incremental;
  std::optional<SysTime> since, until;  // the window asked of the upstream
  std::int64_t page = 0;                // pages spooled so far (next page number)
  std::int64_t records = 0;
  std::string cursor;             // relay endCursor / next link of the last page
  std::optional<SysTime> newest;  // max updated-at seen in this run
  bool exhausted = false;         // its last page is durable: only the end remains
  SysTime started_at{};
};

struct Checkpoint {
  std::optional<RunState> current;
  // The last run that reached its end.
  std::optional<std::string> last_run_id;
  std::optional<SysTime> watermark;       // newest updated-at of complete runs so far
  std::optional<SysTime> last_completed;  // when the last run (any mode) completed
  std::optional<SysTime> last_full;       // when the last full run completed
  std::uint64_t seq = 0;                  // of the slot it was read from (checkpoint.cpp)
};

// No slot: an empty checkpoint. One slot torn (a write cut short): the other one, one save
// older, is used and fetcher.checkpoint_slot_torn logged. No whole slot at all is an error
// (never silently restart from scratch: that would refetch everything, or worse, skip nothing).
[[nodiscard]] Checkpoint load_checkpoint(const std::filesystem::path& state_dir,
                                         std::string_view entity);
// Durable on return; advances cp.seq.
void save_checkpoint(const std::filesystem::path& state_dir, std::string_view entity,
                     Checkpoint& cp);

}  // namespace ingestd::fetcher
