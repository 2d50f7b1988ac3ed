// Generates the staging benchmark's input: N timeline-like records (~300 bytes, ~5% exact
// duplicates of earlier records) as spool pages, and the same records as a COPY text file
// for the psql baseline. MODE is the pages' run mode: incremental (the default, the routine
// page) or full (the stager also records every id of a full run's pages for the reconciler's
// deletions: ingestd_full_run_ids).
//   bench_gen SPOOL_DIR COPY_FILE N [PAGE_SIZE] [SEED] [MODE]
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/spool.hpp"

namespace {

// Record i is a pure function of i, so a duplicate is simply record(j) again.
std::string record(std::uint64_t i) {
  std::mt19937_64 r(i * 0x9E3779B97F4A7C15ULL);
  static constexpr const char* kTypes[] = {"SERVICE", "TUNING", "NOTE", "APPOINTMENT", "INVOICE"};
  auto day = 1 + r() % 28, hour = r() % 24, minute = r() % 60;
  return fmt::format(
      R"({{"id":"tme_{:010d}","type":"{}","occurredAt":"2026-{:02}-{:02}T{:02}:{:02}:00Z",)"
      R"("summary":"Visit {} - pitch raise and regulation, customer notes \"ok\"",)"
      R"("piano":{{"id":"pno_{:06d}"}},"user":{{"id":"usr_{:03d}"}},"client":{{"id":"cln_{:05d}"}},)"
      R"("durationMinutes":{},"billable":{},"updatedAt":"2026-{:02}-{:02}T{:02}:{:02}:30.123Z"}})",
      i, kTypes[r() % 5], 1 + r() % 12, day, hour, minute, r() % 100000, r() % 50000, r() % 200,
      r() % 20000, 15 + r() % 180, (r() % 2) ? "true" : "false", 1 + r() % 12, day, hour, minute);
}

// COPY text format: backslash is the escape character.
std::string copy_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else
      out += c;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: bench_gen SPOOL_DIR COPY_FILE N [PAGE_SIZE] [SEED] [MODE]\n");
    return 2;
  }
  std::filesystem::path spool = argv[1];
  std::ofstream copy(argv[2], std::ios::binary);
  std::uint64_t n = std::strtoull(argv[3], nullptr, 10);
  std::uint64_t page_size = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 500;
  std::mt19937_64 rng(argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 42);

  ingestd::spool::Meta meta;
  meta.source = "bench";
  meta.entity = "timeline_entries";
  meta.run_id = "bench";
  meta.mode = argc > 6 ? argv[6] : "incremental";
  std::vector<std::string> page;
  std::uint64_t bytes = 0, duplicates = 0, next_id = 0;
  auto flush = [&] {
    if (page.empty()) return;
    std::vector<std::string_view> views(page.begin(), page.end());
    meta.fetched_at = std::chrono::system_clock::now();
    ingestd::spool::write_page(spool, meta, views);
    ++meta.page;
    page.clear();
  };
  for (std::uint64_t i = 0; i < n; ++i) {
    bool dup = next_id > 0 && rng() % 100 < 5;
    std::string r = dup ? record(rng() % next_id) : record(next_id++);
    duplicates += dup;
    bytes += r.size();
    copy << copy_escape(r) << '\n';
    page.push_back(std::move(r));
    if (page.size() == page_size) flush();
  }
  flush();
  std::printf("records=%llu unique=%llu duplicates=%llu files=%lld avg_bytes=%llu\n",
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(next_id),
              static_cast<unsigned long long>(duplicates), static_cast<long long>(meta.page),
              static_cast<unsigned long long>(n ? bytes / n : 0));
  return 0;
}
