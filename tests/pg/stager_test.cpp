// Protects the staging contract (BRIEF §3) against a real Postgres: each file exactly once,
// one row per distinct content, nothing dropped (flagged rows, quarantined files, records
// Postgres refuses), purge in batches, and one entity's failure never stops another.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>

#include "core/hash.hpp"
#include "core/migrations.hpp"
#include "core/spool.hpp"
#include "staging/stager.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  test::TestDatabase db;
  test::TempDir dir;
  fs::path spool = dir.path() / "spool";
  config::Config cfg;
  StopToken stop;

  explicit Fixture(std::vector<std::string> entities = {"timeline_entries"}) {
    cfg = test::write_config(dir.path(), {db.url(), spool, entities});
    auto conn = db.connect();
    (void)migrations::migrate(conn, cfg);
  }
  staging::Totals drain() {
    staging::Totals t;
    CHECK(staging::run(cfg, stop, staging::RunMode::until_empty, &t) == 0);
    return t;
  }
  std::int64_t rows(const std::string& where = "true") {
    return db.count("SELECT count(*) FROM stg_timeline_entries WHERE " + where);
  }
  std::size_t files_in(const fs::path& d) {
    std::size_t n = 0;
    std::error_code ec;
    for (auto& e : fs::recursive_directory_iterator(d, ec))
      if (e.is_regular_file()) ++n;
    return n;
  }
};

std::string rec(int id, const std::string& extra = "") {
  return fmt::format(R"({{"id":"tme_{}","occurredAt":"2026-01-01T00:00:00Z"{}}})", id, extra);
}

}  // namespace

TEST_CASE("a page is staged with its ledger row - then archived") {
  Fixture f;
  auto file = test::spool_page(f.spool, "timeline_entries", {rec(1), rec(2), rec(3)}, 4, "runA");
  auto t = f.drain();
  CHECK(t.files_loaded == 1);
  CHECK(t.staged == 3);
  CHECK(f.rows() == 3);
  CHECK(f.rows("run_id = 'runA' AND NOT processed AND invalid_reason IS NULL") == 3);
  CHECK(f.db.scalar("SELECT external_id FROM stg_timeline_entries ORDER BY id LIMIT 1") == "tme_1");
  CHECK(f.db.scalar("SELECT raw_data->>'occurredAt' FROM stg_timeline_entries LIMIT 1") ==
        "2026-01-01T00:00:00Z");
  // content_hash is md5 of the minified record text
  CHECK(f.db.scalar("SELECT replace(content_hash::text, '-', '') FROM stg_timeline_entries "
                    "WHERE external_id = 'tme_2'") == md5(rec(2)).hex());
  CHECK(f.db.scalar("SELECT records || '/' || staged || '/' || page || '/' || outcome FROM "
                    "ingestd_spool_ledger") == "3/3/4/loaded");
  CHECK(f.db.count("SELECT count(*) FROM stg_timeline_entries s JOIN ingestd_spool_ledger l ON "
                   "l.id = s.ledger_id") == 3);
  CHECK_FALSE(fs::exists(file));
  CHECK(f.files_in(f.spool / "archive") == 1);
}

// Protects spool.min_free: when the spool's file system is short of space, the stager removes
// archived copies (oldest day first) before it stages, so that the fetcher can go on writing;
// what waits in incoming/ is never touched. min_free 1 means "always short".
TEST_CASE("a spool short of space loses its archived copies first - never a waiting file") {
  Fixture f;
  f.cfg.spool_min_free = 1.0;
  for (const char* day : {"2026-01-01", "2026-01-02"}) {
    auto d = f.spool / "archive" / "timeline_entries" / day;
    fs::create_directories(d);
    std::ofstream(d / "old.json") << "{}";
  }
  auto file = test::spool_page(f.spool, "timeline_entries", {rec(1), rec(2), rec(3)});
  auto t = f.drain();
  CHECK(t.staged == 3);
  CHECK(f.rows() == 3);
  CHECK_FALSE(fs::exists(f.spool / "archive" / "timeline_entries" / "2026-01-01"));
  CHECK_FALSE(fs::exists(f.spool / "archive" / "timeline_entries" / "2026-01-02"));
  CHECK(f.files_in(f.spool / "archive") == 1);  // the page just loaded, archived after
  CHECK_FALSE(fs::exists(file));
}

TEST_CASE("the same file delivered twice is loaded once") {
  Fixture f;
  auto file = test::spool_page(f.spool, "timeline_entries", {rec(1), rec(2)});
  auto copy = f.dir.path() / "copy.json";
  fs::copy_file(file, copy);
  f.drain();
  fs::copy_file(copy, file);  // a replay: same name back in incoming/
  auto t = f.drain();
  CHECK(t.files_replayed == 1);
  CHECK(t.files_loaded == 0);
  CHECK(f.rows() == 2);
  CHECK(f.db.count("SELECT count(*) FROM ingestd_spool_ledger") == 1);
  CHECK(spool::pending(f.spool, "timeline_entries").empty());
}

TEST_CASE("the same content ten times is one row - changed content of the same id is a new row") {
  Fixture f;
  for (int i = 0; i < 9; ++i) test::spool_page(f.spool, "timeline_entries", {rec(7)}, i);
  test::spool_page(f.spool, "timeline_entries", {rec(7), rec(7, R"(,"note":"changed")")}, 9);
  // Whitespace is not content: the minified text is what is hashed.
  test::spool_page(f.spool, "timeline_entries",
                   {R"({ "id" : "tme_7",  "occurredAt" : "2026-01-01T00:00:00Z" })"}, 10);
  auto t = f.drain();
  CHECK(t.records == 12);
  CHECK(t.staged == 2);
  CHECK(t.duplicates == 10);
  CHECK(f.rows("external_id = 'tme_7'") == 2);
  CHECK(f.rows("raw_data->>'note' = 'changed'") == 1);
  CHECK(f.db.count("SELECT sum(duplicates) FROM ingestd_spool_ledger") == 10);
}

TEST_CASE("records that are not objects or lack an id are staged and flagged with the reason") {
  Fixture f;
  test::spool_page(f.spool, "timeline_entries",
                   {rec(1), R"([1,2,3])", R"({"name":"no id"})", R"({"id":{"nested":true}})",
                    "null", R"({"id":3.5})"});
  auto t = f.drain();
  CHECK(t.staged == 6);
  CHECK(t.flagged == 5);
  CHECK(f.rows("invalid_reason IS NULL AND external_id = 'tme_1'") == 1);
  CHECK(f.rows("invalid_reason = 'record is an array, not an object' AND raw_data = '[1,2,3]'") ==
        1);
  CHECK(f.rows("invalid_reason = 'missing id field ''id''' AND raw_data->>'name' = 'no id'") == 1);
  CHECK(f.rows("invalid_reason LIKE 'id field ''id'' is an object%'") == 1);
  CHECK(f.rows("invalid_reason = 'record is null, not an object'") == 1);
  CHECK(f.rows("invalid_reason LIKE 'id field ''id'' is a non-integer number%'") == 1);
  CHECK(f.rows("invalid_reason IS NOT NULL AND external_id IS NULL") == 5);
}

TEST_CASE("a file that is not JSON goes to quarantine with its bytes and the parse error") {
  Fixture f;
  auto dir = spool::incoming_dir(f.spool, "timeline_entries");
  fs::create_directories(dir);
  std::string garbage = "<html>502 Bad Gateway</html>\n\x01\x02";
  spool::write_atomically(dir / "20260101T000000.000000Z_x_p000001_00000000.json", garbage);
  test::spool_page(f.spool, "timeline_entries", {rec(1)});
  auto t = f.drain();
  CHECK(t.files_quarantined == 1);
  CHECK(t.files_loaded == 1);
  CHECK(f.rows() == 1);
  std::string hex;
  for (unsigned char c : garbage) hex += fmt::format("{:02x}", c);
  CHECK(f.db.scalar("SELECT encode(raw_bytes, 'hex') FROM ingestd_quarantine") == hex);
  CHECK(f.db.scalar("SELECT error FROM ingestd_quarantine").find("not JSON") == 0);
  CHECK(f.db.scalar("SELECT outcome FROM ingestd_spool_ledger WHERE file_name LIKE '%_x_%'") ==
        "quarantined");
  CHECK(f.files_in(spool::quarantine_dir(f.spool, "timeline_entries")) == 1);
}

TEST_CASE("a truncated page is quarantined whole and none of its records are staged") {
  Fixture f;
  auto good = test::spool_page(f.spool, "timeline_entries", {rec(1), rec(2), rec(3)});
  std::string bytes = test::read_text(good);
  spool::write_atomically(good, bytes.substr(0, bytes.size() - 20));
  auto t = f.drain();
  CHECK(t.files_quarantined == 1);
  CHECK(f.rows() == 0);
  CHECK(f.db.count("SELECT bytes FROM ingestd_quarantine") ==
        static_cast<std::int64_t>(bytes.size() - 20));
}

TEST_CASE("a record Postgres refuses as jsonb is kept as text and flagged - the rest load") {
  Fixture f;
  test::spool_page(f.spool, "timeline_entries",
                   {rec(1), R"({"id":"tme_2","amount":1e999999})", rec(3)});
  auto t = f.drain();
  CHECK(t.files_loaded == 1);
  CHECK(f.rows() == 3);
  CHECK(f.rows("invalid_reason IS NULL") == 2);
  CHECK(f.rows("external_id = 'tme_2' AND jsonb_typeof(raw_data) = 'string' AND "
               "invalid_reason LIKE 'postgres rejected the record%'") == 1);
  CHECK(f.db.scalar(
            "SELECT raw_data #>> '{}' FROM stg_timeline_entries WHERE external_id = 'tme_2'") ==
        R"({"id":"tme_2","amount":1e999999})");
}

TEST_CASE("a run_end marker records the completed run") {
  Fixture f;
  spool::Meta m;
  m.source = "sim";
  m.entity = "timeline_entries";
  m.run_id = "full-1";
  m.mode = "full";
  m.pages = 3;
  m.records = 1234;
  m.fetched_at = std::chrono::system_clock::now();
  spool::write_run_end(f.spool, m);
  auto t = f.drain();
  CHECK(t.run_ends == 1);
  CHECK(f.db.scalar("SELECT mode || ':' || pages || ':' || records FROM ingestd_fetch_runs "
                    "WHERE run_id = 'full-1'") == "full:3:1234");
}

TEST_CASE("a file whose entity field disagrees with its folder is quarantined") {
  Fixture f;
  auto file = test::spool_page(f.spool, "timeline_entries", {rec(1)});
  auto other = spool::incoming_dir(f.spool, "timeline_entries") / "zz_other.json";
  std::string text = test::read_text(file);
  text.replace(text.find("\"timeline_entries\""), 18, "\"pianos\"");
  fs::remove(file);
  spool::write_atomically(other, text);
  auto t = f.drain();
  CHECK(t.files_quarantined == 1);
  CHECK(f.rows() == 0);
  CHECK(f.db.scalar("SELECT error FROM ingestd_quarantine").find("says entity 'pianos'") !=
        std::string::npos);
}

TEST_CASE("purge deletes processed rows older than purge_after in batches - nothing else") {
  Fixture f;
  f.cfg.staging_purge_batch = 7;
  std::vector<std::string> recs;
  for (int i = 0; i < 50; ++i) recs.push_back(rec(i));
  test::spool_page(f.spool, "timeline_entries", recs);
  f.drain();
  auto conn = f.db.connect();
  // 30 processed long ago, 10 processed recently, 10 unprocessed.
  conn.exec_script(
      "UPDATE stg_timeline_entries SET processed = true, processed_at = now() - "
      "interval '40 days' WHERE id IN (SELECT id FROM stg_timeline_entries ORDER BY id LIMIT 30)");
  conn.exec_script(
      "UPDATE stg_timeline_entries SET processed = true, processed_at = now() "
      "WHERE id IN (SELECT id FROM stg_timeline_entries WHERE NOT processed ORDER BY id LIMIT 10)");
  CHECK(staging::purge(f.cfg, f.stop) == 30);
  CHECK(f.rows() == 20);
  CHECK(f.rows("processed") == 10);
  CHECK(staging::purge(f.cfg, f.stop) == 0);
}

TEST_CASE("an entity whose table is missing fails alone - the others are staged") {
  Fixture f({"timeline_entries", "pianos"});
  f.db.connect().exec_script("DROP TABLE stg_pianos");
  test::spool_page(f.spool, "pianos", {R"({"id":"pno_1"})"});
  test::spool_page(f.spool, "timeline_entries", {rec(1)});
  staging::Totals t;
  CHECK(staging::run(f.cfg, f.stop, staging::RunMode::until_empty, &t) == 1);
  CHECK(f.rows() == 1);
  CHECK(spool::pending(f.spool, "pianos").size() == 1);  // kept, not dropped
}

TEST_CASE("large pages are sent in several COPY batches") {
  Fixture f;
  f.cfg.staging_batch_records = 100;
  std::vector<std::string> recs;
  for (int i = 0; i < 1050; ++i) recs.push_back(rec(i));
  recs.push_back(rec(5));  // duplicate across batches of the same file
  test::spool_page(f.spool, "timeline_entries", recs);
  auto t = f.drain();
  CHECK(t.staged == 1050);
  CHECK(t.duplicates == 1);
  CHECK(f.rows() == 1050);
}

TEST_CASE("content staged by an earlier run is recognised after a restart") {
  Fixture f;
  test::spool_page(f.spool, "timeline_entries", {rec(1), rec(2)}, 1, "first");
  f.drain();
  // A new run() builds its known-content filter from the table.
  test::spool_page(f.spool, "timeline_entries", {rec(1), rec(2), rec(3)}, 1, "second");
  auto t = f.drain();
  CHECK(t.staged == 1);
  CHECK(t.duplicates == 2);
  CHECK(f.rows() == 3);
}

TEST_CASE(
    "a page whose envelope reads but a later record is broken is quarantined - the rest load") {
  // Found by tests/fuzz (fuzz_spool): PageReader::next threw after the envelope was accepted,
  // the stager did not expect it, and the entity's batch failed on every turn. A bad id value
  // spoils only its own record.
  Fixture f;
  test::spool_page(f.spool, "timeline_entries", {rec(1)});
  test::spool_page(f.spool, "timeline_entries", {rec(2), R"({"x":1,2,"id":"tme_3"})"});
  test::spool_page(f.spool, "timeline_entries", {rec(4), R"({"id":S})"});
  auto t = f.drain();
  CHECK(t.files_quarantined == 1);
  CHECK(t.files_loaded == 2);
  CHECK(f.rows() == 3);  // tme_1, tme_4 and the `"id":S` record, kept as text
  CHECK(f.rows("invalid_reason IS NOT NULL AND external_id IS NULL") == 1);
  CHECK(f.db.scalar("SELECT error FROM ingestd_quarantine").find("not JSON") == 0);
  CHECK(f.files_in(spool::incoming_dir(f.spool, "timeline_entries")) == 0);
}
