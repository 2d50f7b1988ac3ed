// The spool: the only interface between the fetcher (no database) and the stager.
// One file = one page of raw records plus the run's metadata, written atomically; the format
// and the directory layout are specified in docs/SPOOL.md.
//
//   <dir>/incoming/<entity>/<name>.json      waiting to be staged
//   <dir>/archive/<entity>/<YYYY-MM-DD>/...  staged (committed); pruned after archive_max_age
//   <dir>/quarantine/<entity>/...            not a spool document; its bytes are in the database
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "core/time.hpp"

namespace ingestd::spool {

inline constexpr int kFormatVersion = 1;

// JSON nesting the fetcher and the stager accept (simdjson's default is 1024, and a deeper
// record would stop its whole page). Postgres stores a jsonb ~10 000 deep with its default
// 2 MB stack, so this stays below that. A parser gets it from use_max_depth().
inline constexpr std::size_t kMaxDepth = 8192;
void use_max_depth(simdjson::ondemand::parser& parser);

enum class Kind { page, run_end, run_summary };

// A fetch run's summary (kind run_summary): written when the run starts or resumes, every
// minute while it runs, and when it ends. The stager turns it into the fetcher's sync_status
// row (the fetcher has no database); the newest summary of a run wins.
struct RunSummary {
  std::string status;  // running | success | failed
  SysTime started_at{};
  std::optional<SysTime> completed_at;
  std::int64_t records = 0, pages = 0, requests = 0, failed_requests = 0, retries = 0;
  double throttled_seconds = 0;
  std::map<std::string, std::int64_t> statuses;  // HTTP status ("0": no answer) -> requests
  std::string error;                             // why it failed; empty otherwise
  std::string host;
  std::int64_t pid = 0;
};

struct Meta {
  Kind kind = Kind::page;
  std::string source;
  std::string entity;
  std::string run_id;
  std::string mode;  // incremental | full | repair
  std::int64_t page = 0;
  SysTime fetched_at{};
  std::optional<std::string> api_version;
  // run_end only: what the run produced, so a full run's deletions can be trusted.
  std::int64_t pages = 0;
  std::int64_t records = 0;
  RunSummary summary;  // run_summary only
};

namespace fs = std::filesystem;

[[nodiscard]] fs::path incoming_dir(const fs::path& spool, std::string_view entity);
[[nodiscard]] fs::path archive_dir(const fs::path& spool, std::string_view entity, SysTime day);
[[nodiscard]] fs::path quarantine_dir(const fs::path& spool, std::string_view entity);

// Writes `bytes` under `final_path` so that a reader sees all of it or nothing: a dot-named
// temporary in the same directory, fsync, rename, and (with sync_dir) fsync of the directory,
// without which a power loss may bring back the previous version of the file.
void write_atomically(const fs::path& final_path, std::string_view bytes, bool sync_dir = true);

// Writes one page; `records` are each one complete JSON value, copied verbatim. Without
// sync_dir the caller must sync_directory(incoming_dir(...)) before relying on the page
// (the fetcher does that once for a group of pages).
fs::path write_page(const fs::path& spool, const Meta& meta,
                    const std::vector<std::string_view>& records, bool sync_dir = true);
// fsync of a directory: the renames into it survive a power loss.
void sync_directory(const fs::path& dir);
// Writes the marker that closes a run (kind run_end) with its page and record counts.
fs::path write_run_end(const fs::path& spool, const Meta& meta);

// Writes a run summary (kind run_summary); meta.summary is the content.
fs::path write_run_summary(const fs::path& spool, const Meta& meta);

// Writes a response body exactly as received, under a page name ending in `_received`. It is
// not a spool document, so the stager quarantines it with its bytes: the fetcher keeps this
// way what it could not spool verbatim (bytes that are not UTF-8, see fetcher/README.md).
fs::path write_received(const fs::path& spool, const Meta& meta, std::string_view body);

// Files waiting in incoming/<entity>, oldest name first (names start with the fetch time).
[[nodiscard]] std::vector<fs::path> pending(const fs::path& spool, std::string_view entity);

// Moves a committed file out of incoming/ (rename: same file system).
fs::path move_to(const fs::path& file, const fs::path& dir);

// Files in archive/ older than max_age are removed; returns how many.
std::size_t prune_archive(const fs::path& spool, std::string_view entity,
                          std::chrono::milliseconds max_age, SysTime now);

// The share of the spool's file system this process may still write (statvfs: blocks
// available / all blocks), or nullopt when it cannot be read.
[[nodiscard]] std::optional<double> free_fraction(const fs::path& spool);

// Disk pressure: while `free_now()` is below `min_free`, removes archived files (loaded
// already, kept only as a copy) a day folder at a time, the oldest day first across every
// entity under archive/. Never touches incoming/ or quarantine/. Returns how many files.
std::size_t prune_archive_for_space(const fs::path& spool, double min_free,
                                    const std::function<std::optional<double>()>& free_now);

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Record {
  std::string_view json;                   // minified record text, valid until the next call
  std::optional<std::string> external_id;  // absent when invalid_reason is set
  std::string invalid_reason;              // why the reconciler must reject it; empty if fine
};

// Reads one spool file. The constructor validates the envelope and reads the metadata;
// next() then streams the records. Both throw FormatError when the bytes are not a spool
// document (not JSON, missing fields, records not an array).
class PageReader {
 public:
  PageReader(simdjson::ondemand::parser& parser, std::string bytes);
  [[nodiscard]] const Meta& meta() const { return meta_; }
  [[nodiscard]] std::string_view original() const { return original_; }
  // Starts the records over (a load that is retried reads the file again from memory).
  void rewind();
  // Fills `out` with the next record; false after the last one.
  bool next(Record& out, const std::vector<std::string>& id_path);

 private:
  [[noreturn]] void fail(std::string_view what, simdjson::error_code e = simdjson::SUCCESS);
  void read_meta();
  void read_summary(simdjson::ondemand::value& value);

  std::string original_;
  simdjson::padded_string minified_;
  std::size_t minified_size_ = 0;
  simdjson::ondemand::parser* parser_;
  simdjson::ondemand::document doc_;
  simdjson::ondemand::array records_;
  simdjson::ondemand::array_iterator it_, end_;
  Meta meta_;
};

// "node.id" -> {"node", "id"}
[[nodiscard]] std::vector<std::string> split_path(std::string_view dotted);

}  // namespace ingestd::spool
