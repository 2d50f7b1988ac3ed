// Protects the stager as a process: SIGKILL at any moment then restart stages every record
// exactly once; SIGTERM rolls back or finishes within 5 s; a database outage is waited out
// and loses nothing; the database password never reaches the log.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <csignal>
#include <random>
#include <set>
#include <thread>

#include "core/hash.hpp"
#include "core/migrations.hpp"
#include "core/spool.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct ProcFixture {
  test::TestDatabase db;
  test::TempDir dir;
  fs::path spool = dir.path() / "spool";
  std::string cfg_path;

  explicit ProcFixture(std::string admin = test::admin_url(), std::string extra = "")
      : db(std::move(admin)) {
    auto cfg = test::write_config(dir.path(), {db.url(), spool, {"timeline_entries"}, "id", extra});
    cfg_path = (dir.path() / "ingestd.yaml").string();
    auto conn = db.connect();
    (void)migrations::migrate(conn, cfg);
  }
  // Writes `files` pages of `per_file` records; ids are unique across all of them.
  std::int64_t write_pages(int files, int per_file, int first_page = 0) {
    for (int p = first_page; p < first_page + files; ++p) {
      std::vector<std::string> recs;
      for (int i = 0; i < per_file; ++i)
        recs.push_back(
            fmt::format(R"({{"id":"tme_{}_{}","body":"{}"}})", p, i, std::string(200, 'x')));
      test::spool_page(spool, "timeline_entries", recs, p);
    }
    return static_cast<std::int64_t>(files) * per_file;
  }
  std::int64_t staged() const { return db.count("SELECT count(*) FROM stg_timeline_entries"); }
  // Every invariant of exactly-once at once.
  void check_exactly_once(std::int64_t expected_records, int expected_files) const {
    CHECK(staged() == expected_records);
    CHECK(db.count("SELECT count(DISTINCT external_id) FROM stg_timeline_entries") ==
          expected_records);
    CHECK(db.count("SELECT count(*) FROM ingestd_spool_ledger") == expected_files);
    CHECK(db.count("SELECT coalesce(sum(staged), 0) FROM ingestd_spool_ledger") ==
          expected_records);
    CHECK(spool::pending(spool, "timeline_entries").empty());
  }
  std::unique_ptr<test::Child> start(const std::string& log_name,
                                     std::map<std::string, std::string> env = {}) {
    return std::make_unique<test::Child>(std::vector<std::string>{"stager", "--config", cfg_path},
                                         dir.path() / log_name, env);
  }
  bool drained() const { return spool::pending(spool, "timeline_entries").empty(); }
};

}  // namespace

TEST_CASE("SIGKILL at each point of a file's load - then restart: every record staged once") {
  for (const char* point :
       {"stager.after_ledger", "stager.mid_copy", "stager.before_commit", "stager.after_commit"}) {
    CAPTURE(point);
    // One worker, two files per transaction: three files make two transactions, and the
    // failpoint fires in the second, after the first has committed.
    ProcFixture f(test::admin_url(), "staging: {workers: 1, files_per_transaction: 2}\n");
    auto expected = f.write_pages(3, 500);
    auto victim = f.start("killed.log", {{"INGESTD_FAILPOINTS", std::string(point) + ":2"}});
    auto status = victim->wait(30s);
    REQUIRE(status);
    CHECK(*status == 128 + SIGKILL);
    // The first transaction's two files are archived; the third is still waiting (after
    // stager.after_commit it is committed but not moved: the restart must see a replay).
    CHECK(spool::pending(f.spool, "timeline_entries").size() == 1);
    auto survivor = f.start("restart.log");
    REQUIRE(survivor->wait_for_log("event=stager.started", 10s));
    REQUIRE(test::eventually([&] { return f.drained(); }, 30s));
    survivor->signal(SIGTERM);
    CHECK(survivor->wait(10s) == 0);
    f.check_exactly_once(expected, 3);
    bool replayed = survivor->log_text().find("stager.file_replayed") != std::string::npos;
    CHECK(replayed == (std::string(point) == "stager.after_commit"));
  }
}

TEST_CASE("SIGKILL at random moments - over and over: every record staged exactly once") {
  ProcFixture f;
  auto expected = f.write_pages(40, 1000);
  std::mt19937 rng(20261126);
  std::uniform_int_distribution<int> delay_ms(5, 120);
  int kills = 0;
  for (int round = 0; round < 200 && !f.drained(); ++round) {
    auto child = f.start("round.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    child->signal(SIGKILL);
    child->wait(10s);
    ++kills;
  }
  auto finisher = f.start("finish.log");
  REQUIRE(finisher->wait_for_log("event=stager.started", 10s));
  REQUIRE(test::eventually([&] { return f.drained(); }, 60s));
  finisher->signal(SIGTERM);
  CHECK(finisher->wait(10s) == 0);
  MESSAGE("kills: " << kills);
  CHECK(kills > 5);
  f.check_exactly_once(expected, 40);
}

TEST_CASE("SIGTERM mid-load: exits 0 within 5 s - what is staged is whole files only") {
  ProcFixture f;
  f.write_pages(30, 2000);
  auto child = f.start("term.log");
  REQUIRE(test::eventually([&] { return f.staged() > 0; }, 30s));
  auto t0 = std::chrono::steady_clock::now();
  child->signal(SIGTERM);
  auto status = child->wait(5s);
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  // Whatever was committed is whole files: rows == sum over ledger.
  CHECK(f.staged() == f.db.count("SELECT coalesce(sum(staged), 0) FROM ingestd_spool_ledger"));
  CHECK(child->log_text().find("event=stager.stopped") != std::string::npos);
}

TEST_CASE("database down mid-run: the stager waits - retries - and loses nothing") {
  test::TempCluster cluster;
  ProcFixture f(cluster.admin_url());
  auto expected = f.write_pages(5, 200);
  auto child = f.start("outage.log");
  REQUIRE(child->wait_for_log("event=stager.started", 10s));
  REQUIRE(test::eventually([&] { return f.drained(); }, 30s));

  cluster.stop();
  expected += f.write_pages(5, 200, 100);
  // It notices, keeps running, and keeps the files.
  REQUIRE(child->wait_for_log("stager.database_unreachable", 20s));
  std::this_thread::sleep_for(1s);
  CHECK_FALSE(child->wait(0ms));
  CHECK(spool::pending(f.spool, "timeline_entries").size() == 5);

  cluster.start();
  REQUIRE(test::eventually([&] { return f.drained(); }, 30s));
  child->signal(SIGTERM);
  CHECK(child->wait(10s) == 0);
  f.check_exactly_once(expected, 10);
}

TEST_CASE("started while the database is down: it waits - then stages when it comes up") {
  test::TempCluster cluster;
  ProcFixture f(cluster.admin_url());
  cluster.stop();
  auto expected = f.write_pages(2, 100);
  auto child = f.start("late.log");
  REQUIRE(child->wait_for_log("stager.database_unreachable", 20s));
  cluster.start();
  REQUIRE(test::eventually([&] { return f.drained(); }, 30s));
  child->signal(SIGTERM);
  CHECK(child->wait(10s) == 0);
  f.check_exactly_once(expected, 2);
}

TEST_CASE("the database password appears in no log line - even when the connection fails") {
  test::TempDir dir;
  const std::string password = "Pw-n0t-for-logs-9271";
  // Port 1 refuses connections: the stager logs its connection errors.
  auto cfg = test::write_config(
      dir.path(),
      {fmt::format("postgresql://ingest:{}@127.0.0.1:1/db", password), dir.path() / "spool"});
  test::Child child({"stager", "--config", (dir.path() / "ingestd.yaml").string()},
                    dir.path() / "secret.log");
  REQUIRE(test::eventually(
      [&] {
        auto t = child.log_text();
        return std::count(t.begin(), t.end(), '\n') >= 3;  // a few retry lines
      },
      20s));
  child.signal(SIGTERM);
  CHECK(child.wait(10s) == 0);
  auto log = child.log_text();
  CHECK(log.find("stager.database_unreachable") != std::string::npos);
  CHECK(log.find(password) == std::string::npos);
}

TEST_CASE("two workers staging overlapping content never collide and stage each content once") {
  ProcFixture f;
  // 40 pages drawn from a pool of 3,000 records: most content appears in several pages that
  // the two workers load at the same time.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> pick(0, 2999);
  std::set<int> distinct;
  for (int p = 0; p < 40; ++p) {
    std::vector<std::string> recs;
    for (int i = 0; i < 400; ++i) {
      int id = pick(rng);
      distinct.insert(id);
      recs.push_back(fmt::format(R"({{"id":"tme_{}","v":1}})", id));
    }
    test::spool_page(f.spool, "timeline_entries", recs, p);
  }
  test::Child once({"stage", "--once", "--config", f.cfg_path}, f.dir.path() / "once.log");
  REQUIRE(once.wait(60s) == 0);
  CHECK(f.staged() == static_cast<std::int64_t>(distinct.size()));
  CHECK(f.db.count("SELECT sum(staged) FROM ingestd_spool_ledger") ==
        static_cast<std::int64_t>(distinct.size()));
  CHECK(f.db.count("SELECT sum(staged + duplicates) FROM ingestd_spool_ledger") == 40 * 400);
  auto log = once.log_text();
  CHECK(log.find("workers=2") != std::string::npos);
  CHECK(log.find("conflict_retry") == std::string::npos);
}

TEST_CASE("content staged behind the stager's back by another process is still staged once") {
  ProcFixture f;
  f.write_pages(1, 10);
  auto child = f.start("behind.log");
  REQUIRE(test::eventually([&] { return f.drained(); }, 30s));  // filter built, file staged
  // Another stager (here: plain SQL) stages a record this process has never seen.
  std::string rec = R"({"id":"tme_other","v":1})";
  f.db.connect().query(
      "INSERT INTO stg_timeline_entries (raw_data, external_id, content_hash, fetched_at, run_id, "
      "ledger_id) VALUES ($1::jsonb, 'tme_other', $2::uuid, now(), 'other', 0)",
      rec, md5(rec).hex());
  test::spool_page(f.spool, "timeline_entries", {rec, R"({"id":"tme_new","v":1})"}, 1, "run2");
  REQUIRE(test::eventually([&] { return f.drained(); }, 30s));
  child->signal(SIGTERM);
  CHECK(child->wait(10s) == 0);
  CHECK(f.db.count("SELECT count(*) FROM stg_timeline_entries WHERE external_id = 'tme_other'") ==
        1);
  CHECK(f.db.count("SELECT count(*) FROM stg_timeline_entries WHERE external_id = 'tme_new'") == 1);
  CHECK(f.db.scalar(
            "SELECT staged || '/' || duplicates FROM ingestd_spool_ledger WHERE run_id = 'run2'") ==
        "1/1");
  // The unique index refused the unknown duplicate; the batch was redone checking every hash.
  CHECK(child->log_text().find("stager.conflict_retry") != std::string::npos);
}
