// Protects the small core pieces every stage relies on: time format, content hash, backoff,
// identifier validation, log redaction and the spool format round trip.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "core/backoff.hpp"
#include "core/dsn.hpp"
#include "core/hash.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/spool.hpp"
#include "core/time.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
namespace fs = std::filesystem;

TEST_CASE("RFC 3339 round trip - offsets and rejects") {
  auto t = parse_rfc3339("2026-11-26T11:06:34.123456Z");
  REQUIRE(t);
  CHECK(format_rfc3339(*t) == "2026-11-26T11:06:34.123456Z");
  CHECK(format_rfc3339(*parse_rfc3339("2026-11-26T13:06:34+02:00")) ==
        "2026-11-26T11:06:34.000000Z");
  CHECK(format_rfc3339(*parse_rfc3339("2026-11-26 11:06:34.5Z")) == "2026-11-26T11:06:34.500000Z");
  CHECK_FALSE(parse_rfc3339("2026-11-26"));
  CHECK_FALSE(parse_rfc3339("2026-11-26T11:06:34"));  // no zone: ambiguous, refused
  CHECK_FALSE(parse_rfc3339("2026-13-26T11:06:34Z"));
  // Days the month does not have are refused, not rolled over into the next month.
  CHECK_FALSE(parse_rfc3339("2026-02-31T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2026-02-29T00:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2026-04-31T00:00:00Z"));
  CHECK(format_rfc3339(*parse_rfc3339("2024-02-29T23:59:59Z")) == "2024-02-29T23:59:59.000000Z");
  CHECK(format_rfc3339(*parse_rfc3339("2000-02-29T00:00:00Z")) == "2000-02-29T00:00:00.000000Z");
  CHECK_FALSE(parse_rfc3339("1900-02-29T00:00:00Z"));
  // A leap second is the next minute's first, and offsets cross midnight and years.
  CHECK(format_rfc3339(*parse_rfc3339("2016-12-31T23:59:60Z")) == "2017-01-01T00:00:00.000000Z");
  CHECK(format_rfc3339(*parse_rfc3339("2027-01-01T01:30:00+02:00")) ==
        "2026-12-31T23:30:00.000000Z");
  CHECK(format_rfc3339(*parse_rfc3339("1969-12-31T23:59:59.5Z")) == "1969-12-31T23:59:59.500000Z");
}

TEST_CASE("md5 matches the standard digest (Postgres md5() agrees)") {
  CHECK(md5("").hex() == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(md5("The quick brown fox jumps over the lazy dog").hex() ==
        "9e107d9d372bb6826bd81d3542a419d6");
}

TEST_CASE("backoff grows exponentially within jitter bounds and is capped") {
  Backoff b(std::chrono::milliseconds(100), std::chrono::milliseconds(1000), 42);
  auto d0 = b.next().count(), d1 = b.next().count(), d2 = b.next().count();
  CHECK(d0 >= 50);
  CHECK(d0 <= 100);
  CHECK(d1 >= 100);
  CHECK(d1 <= 200);
  CHECK(d2 >= 200);
  CHECK(d2 <= 400);
  for (int i = 0; i < 20; ++i) CHECK(b.next().count() <= 1000);
  b.reset();
  CHECK(b.next().count() <= 100);
}

TEST_CASE("identifiers: only lowercase names pass - quoting is then safe") {
  CHECK(valid_identifier("stg_timeline_entries"));
  CHECK_FALSE(valid_identifier("Users"));
  CHECK_FALSE(valid_identifier("users; DROP TABLE x"));
  CHECK_FALSE(valid_identifier("a\"b"));
  CHECK_FALSE(valid_identifier(""));
  CHECK_FALSE(valid_identifier(std::string(64, 'a')));
  CHECK_THROWS_AS(pg::Identifier("1abc"), std::invalid_argument);
  CHECK(pg::Identifier("users").quoted() == "\"users\"");
}

TEST_CASE("log lines are key=value - one line - and never carry a registered secret") {
  test::LogCapture capture;
  log::add_secret("tok_very_secret_123");
  log::info("test.event", "token={} note={}", "tok_very_secret_123", log::q("two\nlines"));
  log::warn("test.url", "url={}", "postgresql://app:hunter2pass@db/x");
  std::string text = capture.text();
  CHECK(text.find("tok_very_secret_123") == std::string::npos);
  CHECK(text.find("hunter2pass") == std::string::npos);
  CHECK(text.find("level=info event=test.event token=*** note=\"two\\nlines\"") !=
        std::string::npos);
  CHECK(text.find("url=postgresql://app:***@db/x") != std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') == 2);
}

TEST_CASE("DSN passwords are found and masked in URI and keyword forms without libpq") {
  CHECK(dsn::redact("postgresql://u:pw123456@h:5/db") == "postgresql://u:***@h:5/db");
  CHECK(dsn::redact("postgres://u:p%40ss@h/db?sslmode=require&password=q2") ==
        "postgres://u:***@h/db?sslmode=require&password=***");
  CHECK(dsn::redact("host=h password='p w\\'x' dbname=d") == "host=h password=*** dbname=d");
  CHECK(dsn::redact("host=h dbname=d") == "host=h dbname=d");
  CHECK(dsn::passwords("postgresql://u:p%40ss@h/db") == std::vector<std::string>{"p%40ss", "p@ss"});
  CHECK(dsn::passwords("host=h password='p w' user=u") == std::vector<std::string>{"p w"});
  CHECK(dsn::passwords("postgresql://u@h/db").empty());
}

TEST_CASE("a spool page round-trips: metadata - records verbatim (minified) - ids") {
  test::TempDir dir;
  spool::Meta m;
  m.source = "gazelle";
  m.entity = "pianos";
  m.run_id = "r-1";
  m.mode = "full";
  m.page = 7;
  m.fetched_at = *parse_rfc3339("2026-11-26T10:00:00Z");
  m.api_version = "2024-01";
  auto path = spool::write_page(
      dir.path(), m,
      {R"({"id": "pno_1", "make": "Steinway"})", R"({"id":42})", R"({"node":{"id":"x"}})",
       R"([1,2])", R"("just a string")", R"({"id":1.5})", R"({"id":""})", R"({"id":null})"});
  CHECK(path.parent_path() == spool::incoming_dir(dir.path(), "pianos"));
  CHECK(spool::pending(dir.path(), "pianos") == std::vector<std::filesystem::path>{path});

  simdjson::ondemand::parser parser;
  spool::PageReader reader(parser, test::read_text(path));
  CHECK(reader.meta().entity == "pianos");
  CHECK(reader.meta().page == 7);
  CHECK(reader.meta().mode == "full");
  CHECK(*reader.meta().api_version == "2024-01");
  CHECK(format_rfc3339(reader.meta().fetched_at) == "2026-11-26T10:00:00.000000Z");

  std::vector<std::string> id{"id"};
  spool::Record r;
  REQUIRE(reader.next(r, id));
  CHECK(r.json == R"({"id":"pno_1","make":"Steinway"})");
  CHECK(*r.external_id == "pno_1");
  REQUIRE(reader.next(r, id));
  CHECK(*r.external_id == "42");
  REQUIRE(reader.next(r, id));
  CHECK(r.invalid_reason == "missing id field 'id'");
  REQUIRE(reader.next(r, id));
  CHECK(r.invalid_reason == "record is an array, not an object");
  CHECK(r.json == "[1,2]");
  REQUIRE(reader.next(r, id));
  CHECK(r.invalid_reason == "record is a string, not an object");
  REQUIRE(reader.next(r, id));
  CHECK(r.invalid_reason == "id field 'id' is a non-integer number, not a string or an integer");
  REQUIRE(reader.next(r, id));
  CHECK(r.invalid_reason == "id field 'id' is an empty string");
  REQUIRE(reader.next(r, id));
  CHECK(r.invalid_reason == "id field 'id' is null, not a string or an integer");
  CHECK_FALSE(reader.next(r, id));
}

TEST_CASE("nested id paths are followed and the whole record is still returned") {
  test::TempDir dir;
  spool::Meta m;
  m.entity = "e";
  m.run_id = "r";
  m.fetched_at = std::chrono::system_clock::now();
  auto path = spool::write_page(dir.path(), m, {R"({"a":1,"node":{"z":0,"id":"n1"},"b":[2]})"});
  simdjson::ondemand::parser parser;
  spool::PageReader reader(parser, test::read_text(path));
  spool::Record r;
  REQUIRE(reader.next(r, spool::split_path("node.id")));
  CHECK(*r.external_id == "n1");
  CHECK(r.json == R"({"a":1,"node":{"z":0,"id":"n1"},"b":[2]})");
}

TEST_CASE("files that are not spool documents are refused with a reason") {
  simdjson::ondemand::parser parser;
  auto reason = [&](std::string bytes) -> std::string {
    try {
      spool::PageReader r(parser, std::move(bytes));
      spool::Record rec;
      while (r.next(rec, {"id"})) {
      }
      return "";
    } catch (const spool::FormatError& e) {
      return e.what();
    }
  };
  CHECK(reason("this is not json").find("not JSON") == 0);
  CHECK(reason("").find("not JSON") == 0);
  CHECK(
      reason(
          R"({"ingestd_spool":1,"entity":"e","fetched_at":"2026-01-01T00:00:00Z","records":[{"id":1},)")
          .find("not JSON") == 0);
  CHECK(reason(R"({"records":[]})") == "not a spool document: no ingestd_spool version field");
  CHECK(reason(R"({"ingestd_spool":9,"entity":"e"})") == "unsupported spool format version 9");
  CHECK(reason(R"({"ingestd_spool":1,"entity":"e","fetched_at":"yesterday","records":[]})") ==
        "fetched_at 'yesterday' is not an RFC 3339 time");
  CHECK(
      reason(
          R"({"ingestd_spool":1,"entity":"e","fetched_at":"2026-01-01T00:00:00Z","records":[]} x)")
          .find("not JSON") == 0);
  CHECK(
      reason(R"({"ingestd_spool":1,"entity":"e","fetched_at":"2026-01-01T00:00:00Z","records":{}})")
          .find("records is not an array") != std::string::npos);
}

TEST_CASE("atomic writes leave no partial file under the final name") {
  test::TempDir dir;
  auto target = dir.path() / "incoming" / "e" / "f.json";
  spool::write_atomically(target, "hello");
  CHECK(test::read_text(target) == "hello");
  std::size_t entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(target.parent_path()))
    ++entries;
  CHECK(entries == 1);  // the temporary was renamed, not copied
}

TEST_CASE("the archive keeps day folders younger than max_age") {
  test::TempDir dir;
  auto now = *parse_rfc3339("2026-11-26T12:00:00Z");
  auto old_day = spool::archive_dir(dir.path(), "e", now - std::chrono::hours(24 * 10));
  auto new_day = spool::archive_dir(dir.path(), "e", now - std::chrono::hours(24));
  spool::write_atomically(old_day / "a.json", "x");
  spool::write_atomically(new_day / "b.json", "y");
  CHECK(spool::prune_archive(dir.path(), "e", std::chrono::hours(24 * 7), now) > 0);
  CHECK_FALSE(std::filesystem::exists(old_day));
  CHECK(std::filesystem::exists(new_day / "b.json"));
}

// Protects spool::prune_archive_for_space (spool.min_free): day folders go oldest first across
// entities, it stops as soon as enough is free, and incoming/ and quarantine/ are never touched.
TEST_CASE("disk pressure removes archived day folders oldest first and stops when enough is free") {
  test::TempDir dir;
  auto spool = dir.path();
  auto put = [&](const std::string& rel) {
    fs::create_directories((spool / rel).parent_path());
    std::ofstream(spool / rel) << "{}";
  };
  put("archive/users/2026-11-01/a.json");
  put("archive/users/2026-11-01/b.json");
  put("archive/clients/2026-11-02/c.json");
  put("archive/users/2026-11-03/d.json");
  put("incoming/users/e.json");
  put("quarantine/users/f.json");
  // Free space rises as folders go: enough once two day folders are gone.
  int checks_after_removal = 0;
  auto free_now = [&]() -> std::optional<double> {
    bool first_gone = !fs::exists(spool / "archive/users/2026-11-01");
    bool second_gone = !fs::exists(spool / "archive/clients/2026-11-02");
    if (first_gone) ++checks_after_removal;
    return first_gone && second_gone ? 0.2 : 0.01;
  };
  CHECK(spool::prune_archive_for_space(spool, 0.1, free_now) == 3);  // a, b, then c
  CHECK_FALSE(fs::exists(spool / "archive/users/2026-11-01"));
  CHECK_FALSE(fs::exists(spool / "archive/clients/2026-11-02"));
  CHECK(fs::exists(spool / "archive/users/2026-11-03/d.json"));
  CHECK(fs::exists(spool / "incoming/users/e.json"));
  CHECK(fs::exists(spool / "quarantine/users/f.json"));
  CHECK(checks_after_removal >= 2);  // free space is checked again after each folder
  // Enough free: nothing goes; unknown free space: nothing goes.
  CHECK(spool::prune_archive_for_space(spool, 0.1, [] { return std::optional<double>(0.5); }) == 0);
  CHECK(spool::prune_archive_for_space(spool, 0.1, [] { return std::optional<double>(); }) == 0);
  CHECK(fs::exists(spool / "archive/users/2026-11-03/d.json"));
  auto real = spool::free_fraction(spool);
  REQUIRE(real);
  CHECK(*real > 0.0);
  CHECK(*real <= 1.0);
}
