// Protects `ingestd migrate`: applies every migration once, is idempotent, is safe from two
// hosts at once, and creates stg_<entity> for the config's entities.
#include <doctest/doctest.h>

#include <fstream>

#include "core/migrations.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
using namespace std::chrono_literals;

TEST_CASE("migrate applies all migrations - creates staging tables - and is idempotent") {
  test::TestDatabase db;
  test::TempDir dir;
  auto cfg = test::write_config(dir.path(), {db.url(), dir.path() / "spool", {"users", "pianos"}});
  auto conn = db.connect();
  auto first = migrations::migrate(conn, cfg);
  CHECK(first.applied.size() == migrations::all().size());
  CHECK(first.staging_tables == std::vector<std::string>{"stg_users", "stg_pianos"});
  CHECK(db.count("SELECT count(*) FROM ingestd_schema_migrations") ==
        static_cast<std::int64_t>(migrations::all().size()));
  CHECK(
      db.count("SELECT count(*) FROM pg_tables WHERE tablename IN ('stg_users','stg_pianos',"
               "'sync_status','ingestd_spool_ledger','ingestd_quarantine','ingestd_fetch_runs')") ==
      6);
  auto second = migrations::migrate(conn, cfg);
  CHECK(second.applied.empty());
  CHECK(second.drifted.empty());
}

TEST_CASE("a migration edited after it was applied is reported as drift") {
  test::TestDatabase db;
  test::TempDir dir;
  auto cfg = test::write_config(dir.path(), {db.url(), dir.path() / "spool"});
  auto conn = db.connect();
  (void)migrations::migrate(conn, cfg);
  conn.exec_script("UPDATE ingestd_schema_migrations SET checksum = 'x' WHERE version = 1");
  auto again = migrations::migrate(conn, cfg);
  CHECK(again.drifted.size() == 1);
}

TEST_CASE("two migrate processes at once: both succeed - each migration applied once") {
  test::TestDatabase db;
  test::TempDir dir;
  (void)test::write_config(dir.path(), {db.url(), dir.path() / "spool", {"users"}});
  auto cfg = (dir.path() / "ingestd.yaml").string();
  test::Child a({"migrate", "--config", cfg}, dir.path() / "a.log");
  test::Child b({"migrate", "--config", cfg}, dir.path() / "b.log");
  auto ra = a.wait(60s), rb = b.wait(60s);
  REQUIRE(ra);
  REQUIRE(rb);
  CHECK_MESSAGE(*ra == 0, a.log_text());
  CHECK_MESSAGE(*rb == 0, b.log_text());
  CHECK(db.count("SELECT count(*) FROM ingestd_schema_migrations") ==
        static_cast<std::int64_t>(migrations::all().size()));
  // Exactly one of them applied the migrations; the other found nothing to do.
  auto la = a.log_text(), lb = b.log_text();
  bool a_applied = la.find("+ 001_") != std::string::npos;
  bool b_applied = lb.find("+ 001_") != std::string::npos;
  CHECK(a_applied != b_applied);
}

TEST_CASE("check-config exits 2 listing every error - 0 with the masked effective config") {
  test::TempDir dir;
  std::ofstream(dir.path() / "bad.yaml") << "database:\n  url: x\n  colour: blue\nspool: {}\n";
  test::Child bad({"check-config", "--config", (dir.path() / "bad.yaml").string()},
                  dir.path() / "bad.log");
  CHECK(bad.wait(10s) == 2);
  auto out = bad.log_text();
  CHECK(out.find("bad.yaml:3: database.colour: unknown key") != std::string::npos);
  CHECK(out.find("spool.dir: is required") != std::string::npos);
  CHECK(out.find("sources: is required") != std::string::npos);

  (void)test::write_config(dir.path(),
                           {"postgresql://app:Sup3rSecretPw@127.0.0.1/db", dir.path() / "spool"});
  test::Child good({"check-config", "--config", (dir.path() / "ingestd.yaml").string()},
                   dir.path() / "good.log");
  CHECK(good.wait(10s) == 0);
  auto printed = good.log_text();
  CHECK(printed.find("staging.purge_after: 30d") != std::string::npos);
  CHECK(printed.find("Sup3rSecretPw") == std::string::npos);
}
