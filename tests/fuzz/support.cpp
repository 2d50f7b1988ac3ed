#include "tests/fuzz/support.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <simdjson.h>

#include "core/files.hpp"
#include "core/spool.hpp"

namespace ingestd::fuzz {
namespace fs = std::filesystem;

void violated(std::string_view what) {
  std::fprintf(stderr, "\n==== fuzz contract violated: %.*s\n", static_cast<int>(what.size()),
               what.data());
  std::abort();
}

std::optional<std::size_t> read_spool(std::string bytes, std::string_view id_path,
                                      std::string* error) {
  static simdjson::ondemand::parser parser = [] {  // the stager keeps one per loader
    simdjson::ondemand::parser p;
    spool::use_max_depth(p);  // as BatchLoader does
    return p;
  }();
  std::vector<std::string> path = spool::split_path(id_path);
  std::optional<spool::PageReader> reader;
  std::size_t counts[2] = {0, 0};
  try {
    reader.emplace(parser, std::move(bytes));
    // The stager writes these times into the ledger and sync_status.
    const spool::Meta& meta = reader->meta();
    (void)format_rfc3339(meta.fetched_at);
    (void)format_rfc3339(meta.summary.started_at);
    if (meta.summary.completed_at) (void)format_rfc3339(*meta.summary.completed_at);
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) reader->rewind();
      spool::Record rec;
      while (reader->next(rec, path)) {
        if (rec.external_id.has_value() == !rec.invalid_reason.empty())
          violated("a record needs exactly one of an external id and an invalid reason");
        if (rec.external_id && rec.external_id->empty()) violated("an empty external id");
        ++counts[pass];
      }
    }
  } catch (const spool::FormatError& e) {
    // The stager quarantines the file, whether the envelope or a record was broken.
    if (error) *error = e.what();
    return std::nullopt;
  }
  if (counts[0] != counts[1]) violated("a rewound reader gave another number of records");
  return counts[0];
}

namespace {
// The spool directory on tmpfs (fsync is free there). Each page is removed as soon as it has
// been read, and names are unique, so parallel jobs may share it.
const fs::path& spool_root() {
  static const fs::path dir = [] {
    const char* base = std::getenv("INGESTD_FUZZ_TMP");
    fs::path d = fs::path(base ? base : (fs::is_directory("/dev/shm") ? "/dev/shm" : "/tmp")) /
                 "ingestd-fuzz-spool";
    fs::create_directories(d);
    return d;
  }();
  return dir;
}
}  // namespace

void spool_round_trip(const std::vector<std::string_view>& records) {
  spool::Meta meta;
  meta.source = "upstream";
  meta.entity = "things";
  meta.run_id = "r-fuzz";
  meta.mode = "full";
  meta.page = 1;
  meta.fetched_at = std::chrono::system_clock::now();
  fs::path file = spool::write_page(spool_root(), meta, records, false);
  auto bytes = read_file(file);
  fs::remove(file);
  if (!bytes) violated("the page just written cannot be read");
  std::string error;
  auto n = read_spool(*bytes, "id", &error);
  if (!n)
    violated("the stager would quarantine a page the fetcher wrote: " + error + "\n" +
             bytes->substr(0, 4000));
  if (*n != records.size()) violated("the stager reads another number of records than written");
}

}  // namespace ingestd::fuzz
