// Protects the fetcher's checkpoint file format (fetcher/checkpoint.cpp): two slots written in
// place in turn, so that a write cut short by a crash leaves the other slot whole; a torn slot
// is recognised by its checksum and the older whole one is used (the run then fetches a page
// again, never skips one); a checkpoint of the earlier one-file format is still read; and when
// nothing whole is left the error names the file instead of starting from scratch.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "fetcher/checkpoint.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
namespace fs = std::filesystem;

namespace {

fetcher::Checkpoint at_page(std::int64_t page) {
  fetcher::Checkpoint cp;
  fetcher::RunState run;
  run.run_id = "clients-full-1";
  run.mode = fetcher::Mode::full;
  run.page = page;
  run.records = page * 10;
  run.cursor = "cursor-" + std::to_string(page);
  cp.current = run;
  cp.last_run_id = "clients-incremental-0";
  return cp;
}

void overwrite(const fs::path& p, std::size_t offset, std::string_view bytes) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

TEST_CASE("checkpoints alternate between two slots and the newest whole one is loaded") {
  test::TempDir dir;
  auto cp = at_page(0);
  for (std::int64_t page = 1; page <= 5; ++page) {
    cp.current->page = page;
    fetcher::save_checkpoint(dir.path(), "clients", cp);
    auto back = fetcher::load_checkpoint(dir.path(), "clients");
    REQUIRE(back.current);
    CHECK(back.current->page == page);
    CHECK(back.current->cursor == "cursor-0");  // at_page(0) set it; only page moves here
    CHECK(back.seq == static_cast<std::uint64_t>(page));
  }
  CHECK(fs::exists(dir.path() / "clients.json"));
  CHECK(fs::exists(dir.path() / "clients.json.1"));
  // A shorter text over a longer one: blanks keep the slot one JSON document of its old size.
  auto size_before = fs::file_size(dir.path() / "clients.json");
  cp.current.reset();
  fetcher::save_checkpoint(dir.path(), "clients", cp);  // seq 6: slot 0
  CHECK(fs::file_size(dir.path() / "clients.json") == size_before);
  auto back = fetcher::load_checkpoint(dir.path(), "clients");
  CHECK_FALSE(back.current);
  CHECK(back.last_run_id == "clients-incremental-0");
}

TEST_CASE("a torn checkpoint slot falls back to the other slot one write older") {
  test::TempDir dir;
  auto cp = at_page(7);
  fetcher::save_checkpoint(dir.path(), "clients", cp);  // seq 1: clients.json.1, page 7
  cp.current->page = 8;
  fetcher::save_checkpoint(dir.path(), "clients", cp);  // seq 2: clients.json, page 8
  // A crash in the middle of writing page 8's slot: a byte of it never reached the disk. The
  // text stays JSON (a digit of the page), so only the checksum can tell.
  auto slot = dir.path() / "clients.json";
  auto text = test::read_text(slot);
  auto at = text.find("\"page\":8");
  REQUIRE(at != std::string::npos);
  overwrite(slot, at + 7, "9");
  auto back = fetcher::load_checkpoint(dir.path(), "clients");
  REQUIRE(back.current);
  CHECK(back.current->page == 7);  // page 8 is fetched again: a duplicate, never a gap
  // The next save goes over the torn slot, not over the whole one.
  back.current->page = 8;
  fetcher::save_checkpoint(dir.path(), "clients", back);
  CHECK(fetcher::load_checkpoint(dir.path(), "clients").current->page == 8);
  CHECK(test::read_text(dir.path() / "clients.json.1").find("\"page\":7") != std::string::npos);
}

TEST_CASE("a checkpoint of the one-file format is read and superseded and a downgrade is seen") {
  test::TempDir dir;
  std::ofstream(dir.path() / "clients.json")
      << R"({"version":1,"entity":"clients","current":{"run_id":"clients-full-9","mode":"full",)"
         R"("since":null,"until":null,"page":3,"records":30,"cursor":"c3","newest":null,)"
         R"("started_at":"2026-11-01T00:00:00Z","exhausted":false},"last_run_id":null,)"
         R"("watermark":"2026-10-01T00:00:00Z","last_completed":null,"last_full":null})"
      << "\n";
  auto cp = fetcher::load_checkpoint(dir.path(), "clients");
  REQUIRE(cp.current);
  CHECK(cp.current->page == 3);
  CHECK(cp.current->cursor == "c3");
  CHECK(cp.watermark.has_value());
  CHECK(cp.seq == 0);
  cp.current->page = 4;
  fetcher::save_checkpoint(dir.path(), "clients", cp);  // seq 1 goes to the other slot
  CHECK(fetcher::load_checkpoint(dir.path(), "clients").current->page == 4);
  // A downgrade: the older binary goes on replacing clients.json (one-file format) and never
  // touches clients.json.1. Upgraded again, the newer of the two files counts, not the
  // higher sequence number.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::ofstream(dir.path() / "clients.json")
      << R"({"version":1,"entity":"clients","current":{"run_id":"clients-full-9","mode":"full",)"
         R"("page":6,"records":60,"cursor":"c6","started_at":"2026-11-01T00:00:00Z"}})"
      << "\n";
  auto after_downgrade = fetcher::load_checkpoint(dir.path(), "clients");
  REQUIRE(after_downgrade.current);
  CHECK(after_downgrade.current->page == 6);
  CHECK(after_downgrade.seq == 0);
  after_downgrade.current->page = 7;
  fetcher::save_checkpoint(dir.path(), "clients", after_downgrade);  // seq 1: slot 1, newer
  CHECK(fetcher::load_checkpoint(dir.path(), "clients").current->page == 7);
  fetcher::save_checkpoint(dir.path(), "clients", after_downgrade);  // seq 2: slot 0
  CHECK(fetcher::load_checkpoint(dir.path(), "clients").seq == 2);
}

TEST_CASE("a checkpoint with no whole slot is an error naming the file not a fresh start") {
  test::TempDir dir;
  auto cp = at_page(2);
  fetcher::save_checkpoint(dir.path(), "clients", cp);  // clients.json.1
  overwrite(dir.path() / "clients.json.1", 0, "#");
  CHECK_THROWS_WITH_AS(fetcher::load_checkpoint(dir.path(), "clients"),
                       doctest::Contains("clients.json.1"), std::runtime_error);
  CHECK_FALSE(fetcher::load_checkpoint(dir.path(), "users").current);  // none yet: empty
}
