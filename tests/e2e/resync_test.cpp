// Protects `ingestd resync`, the manual repair, run as a real process against the upstream
// simulator and a real Postgres: it reports the documented counts (fetched, new, changed,
// unchanged, placeholders, failed) computed from the database, production reflects them
// (version up exactly once per change), a full resync applies deletions as any full run
// does, counts do not change while a long-lived `ingestd run` shares the work, an invalid
// record makes it exit 1 naming the reason, and bad usage exits 2 saying what is wrong.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <csignal>
#include <fstream>
#include <map>

#include <simdjson.h>

#include "core/migrations.hpp"
#include "core/time.hpp"
#include "reconciler/schema.hpp"
#include "tests/fetcher/sim.hpp"

using namespace ingestd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// clients <- pianos (references); users with `role_type` for role (boolean makes every user
// invalid: "role (role): expected true or false, got string").
std::string entities_yaml(const std::string& role_type = "text") {
  return fmt::format(R"y(
      clients:
        rest: {{path: /rest/clients}}
        page_size: 17
        table:
          columns:
            first_name: {{path: firstName}}
            last_name:  {{path: lastName}}
            phone:      {{path: phone}}
          placeholder: {{first_name: Unknown, last_name: "({{id}})"}}
      pianos:
        rest: {{path: /rest/pianos}}
        page_size: 25
        table:
          columns:
            model:     {{path: model}}
            client_id: {{path: client.id, references: clients}}
      users:
        rest: {{path: /rest/users, pagination: next_link}}
        page_size: 2
        table:
          columns:
            role: {{path: role, type: {}}}
)y",
                     role_type);
}

struct Report {
  int code = -1;
  std::string log;  // stdout and stderr
  std::map<std::string, std::int64_t> n;
  std::string run_id;
  bool ok = false;
};

class Env {
 public:
  explicit Env(const std::string& entities = entities_yaml())
      : sim_(dir_.path(), {"--size", "40"}), cfg_(dir_.path() / "ingestd.yaml") {
    std::ofstream(cfg_) << fmt::format(
        "database: {{url: \"{}\", retry_initial: 100ms, retry_max: 1s}}\n"
        "spool: {{dir: {}}}\nstaging: {{poll_interval: 200ms}}\n"
        "reconciler: {{poll_interval: 200ms, retry_initial: 1s, max_attempts: 3}}\n"
        "log: {{level: info}}\n"
        "sources:\n  sim:\n    base_url: {}\n    rate_limit: {{per_second: 0}}\n    "
        "entities:{}",
        db_.url(), (dir_.path() / "spool").string(), sim_.base(), entities);
    auto loaded = config::load_file(cfg_);
    REQUIRE(loaded.config);
    auto conn = db_.connect();
    (void)migrations::migrate(conn, *loaded.config);
    REQUIRE(reconciler::ensure_tables(conn, *loaded.config).problems.empty());
  }

  test::TestDatabase& db() { return db_; }
  test::Simulator& sim() { return sim_; }
  [[nodiscard]] const fs::path& config() const { return cfg_; }
  [[nodiscard]] const fs::path& dir() const { return dir_.path(); }

  std::pair<int, std::string> ingestd(std::vector<std::string> args) {
    args.insert(args.end(), {"-c", cfg_.string()});
    test::Child child(args, dir_.path() / fmt::format("{}-{}.log", args[0], ++runs_));
    auto code = child.wait(180s);
    REQUIRE_MESSAGE(code, child.log_text());
    return {*code, child.log_text()};
  }

  // The initial sync, one stage after the other.
  void sync() {
    for (auto args : {std::vector<std::string>{"fetch", "--once"},
                      {"stage", "--once"},
                      {"reconcile", "--once"}}) {
      auto [code, log] = ingestd(args);
      REQUIRE_MESSAGE(code == 0, log);
    }
  }

  Report resync(std::vector<std::string> args) {
    args.insert(args.begin(), {"resync", "--json"});
    auto [code, log] = ingestd(args);
    Report r{code, log, {}, "", false};
    auto at = log.find("{\"entity\":");
    REQUIRE_MESSAGE(at != std::string::npos, log);
    simdjson::dom::parser p;
    auto doc = p.parse(log.substr(at, log.find('\n', at) - at));
    REQUIRE_MESSAGE(doc.error() == simdjson::SUCCESS, log);
    for (auto field : doc.get_object())
      if (field.value.is_int64()) r.n[std::string(field.key)] = field.value.get_int64();
    r.run_id = std::string(doc["run_id"].get_string().value());
    r.ok = doc["ok"].get_bool().value();
    return r;
  }

  std::vector<std::string> mutate(const std::string& json) {
    auto reply = sim_.post("/control/mutate", json);
    simdjson::dom::parser p;
    std::vector<std::string> ids;
    for (auto id : p.parse(reply.body)["ids"].get_array())
      ids.emplace_back(id.get_string().value());
    return ids;
  }

  // The newest updatedAt over the simulator's whole data set: updates and additions land
  // one second apart after it.
  SysTime upstream_max() {
    SysTime newest{};
    for (const char* e : {"clients", "pianos", "users", "timeline_entries", "invoices"}) {
      simdjson::dom::parser p;
      auto body = sim_.get(fmt::format("/control/ids?entity={}", e)).body;
      auto t = p.parse(body)["max_updated_at"].get_string();
      if (!t.error()) newest = std::max(newest, *parse_rfc3339(t.value()));
    }
    return newest;
  }

 private:
  test::TestDatabase db_;
  test::TempDir dir_;
  test::Simulator sim_;
  fs::path cfg_;
  int runs_ = 0;
};

std::string in_list(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out += fmt::format("{}'{}'", out.empty() ? "" : ",", id);
  return "(" + out + ")";
}

void check_counts(const Report& r, std::int64_t fetched, std::int64_t created, std::int64_t changed,
                  std::int64_t unchanged) {
  INFO(r.log.substr(0, 6000));
  CHECK(r.code == 0);
  CHECK(r.ok);
  CHECK(r.n.at("fetched") == fetched);
  CHECK(r.n.at("new") == created);
  CHECK(r.n.at("changed") == changed);
  CHECK(r.n.at("unchanged") == unchanged);
  CHECK(r.n.at("failed") == 0);
}

}  // namespace

TEST_CASE("resync of a window reports new changed and unchanged records as production shows") {
  Env env;
  env.sync();
  auto& db = env.db();
  REQUIRE(db.count("SELECT count(*) FROM clients WHERE NOT is_placeholder") == 40);
  auto before = env.upstream_max();
  auto changed = env.mutate(R"({"entity":"clients","op":"update","count":3})");
  auto added = env.mutate(R"({"entity":"clients","op":"add","count":1})");
  REQUIRE(changed.size() == 3);
  REQUIRE(added.size() == 1);

  // Only the four records after the old maximum: the window reaches the upstream.
  auto narrow = env.resync(
      {"--entity", "clients", "--from", format_rfc3339(before + 500ms), "--to", "2027-01-01"});
  check_counts(narrow, 4, 1, 3, 0);
  CHECK(narrow.n.at("placeholders") == 0);
  CHECK(db.count("SELECT count(*) FROM clients WHERE version = 2 AND id IN " + in_list(changed)) ==
        3);
  CHECK(db.count("SELECT count(*) FROM clients WHERE version = 1 AND NOT is_placeholder AND id "
                 "IN " +
                 in_list(added)) == 1);
  CHECK(db.count("SELECT count(*) FROM clients WHERE NOT is_placeholder") == 41);
  CHECK(db.count(fmt::format("SELECT count(*) FROM stg_clients WHERE run_id = '{}' AND outcome "
                             "= 'applied'",
                             narrow.run_id)) == 4);

  // Everything again, dates only: nothing left to change, no version moves.
  auto wide = env.resync({"--entity", "clients", "--from", "2026-01-01", "--to", "2027-01-01"});
  check_counts(wide, 41, 0, 0, 41);
  CHECK(db.count("SELECT sum(version) FROM clients") == 41 + 3);
  CHECK(wide.log.find("event=resync.fetched") != std::string::npos);
  CHECK(wide.log.find("event=resync.staged") != std::string::npos);
  CHECK(wide.log.find("event=resync.reconciled") != std::string::npos);
}

TEST_CASE("resync counts the placeholders it creates and later the placeholders it fills") {
  Env env;
  auto& db = env.db();
  auto pianos = env.resync({"--entity", "pianos", "--from", "2026-01-01", "--to", "2027-01-01"});
  check_counts(pianos, 80, 80, 0, 0);
  auto open = db.count("SELECT count(*) FROM clients WHERE is_placeholder");
  CHECK(open > 0);
  CHECK(pianos.n.at("placeholders") == open);

  auto clients = env.resync({"--entity", "clients", "--full"});
  check_counts(clients, 40, 40, 0, 0);
  CHECK(clients.n.at("filled") == open);
  CHECK(db.count("SELECT count(*) FROM clients WHERE is_placeholder") == 0);
}

TEST_CASE("resync --full reports its counts and applies the full run's deletions") {
  Env env;
  env.sync();
  auto& db = env.db();
  auto deleted = env.mutate(R"({"entity":"clients","op":"delete","count":2})");
  auto changed = env.mutate(R"({"entity":"clients","op":"update","count":1})");
  REQUIRE(deleted.size() == 2);

  auto r = env.resync({"--entity", "clients", "--full"});
  check_counts(r, 38, 0, 1, 37);
  CHECK(r.n.at("deleted") == 2);
  CHECK(db.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL AND id IN " +
                 in_list(deleted)) == 2);
  CHECK(db.count("SELECT count(*) FROM clients WHERE deleted_at IS NOT NULL") == 2);
  CHECK(db.count("SELECT count(*) FROM clients WHERE version = 2 AND id IN " + in_list(changed)) ==
        1);
  CHECK(db.scalar(fmt::format("SELECT deletion FROM ingestd_fetch_runs WHERE run_id = '{}'",
                              r.run_id)) == "applied");
}

TEST_CASE("resync while ingestd run is running gives the same counts and applies each row once") {
  Env env;
  auto& db = env.db();
  test::Child run({"run", "-c", env.config().string()}, env.dir() / "run.log");
  bool synced = test::eventually(
      [&] {
        return db.count("SELECT count(*) FROM clients WHERE NOT is_placeholder") == 40 &&
               db.count("SELECT count(*) FROM pianos WHERE NOT is_placeholder") == 80 &&
               db.count("SELECT count(*) FROM stg_clients WHERE NOT processed") == 0;
      },
      60s);
  REQUIRE_MESSAGE(synced, run.log_text().substr(0, 4000));
  auto changed = env.mutate(R"({"entity":"clients","op":"update","count":3})");
  auto added = env.mutate(R"({"entity":"clients","op":"add","count":1})");

  auto r = env.resync({"--entity", "clients", "--from", "2026-01-01", "--to", "2027-01-01"});
  check_counts(r, 41, 1, 3, 37);
  CHECK(db.count("SELECT count(*) FROM clients WHERE version = 2 AND id IN " + in_list(changed)) ==
        3);
  CHECK(db.count("SELECT sum(version) FROM clients") == 41 + 3);
  // Each staged row of the run applied once, by whichever reconciler claimed it.
  CHECK(db.count(fmt::format("SELECT count(*) FROM stg_clients WHERE run_id = '{}' AND outcome "
                             "= 'applied' AND processing_attempts = 1",
                             r.run_id)) == 4);
  CHECK(db.count(fmt::format("SELECT count(*) FROM ingestd_spool_ledger WHERE run_id = '{}' AND "
                             "outcome = 'loaded'",
                             r.run_id)) == r.n.at("pages"));

  run.signal(SIGTERM);
  CHECK(run.wait(10s) == 0);
}

TEST_CASE("resync exits 1 naming the reason when records in the window are invalid") {
  Env env(entities_yaml("boolean"));
  env.sync();  // the users are skipped here already: their content is staged, and stays bad
  auto r = env.resync({"--entity", "users", "--from", "2026-01-01", "--to", "2027-01-01"});
  INFO(r.log);
  CHECK(r.code == 1);
  CHECK_FALSE(r.ok);
  CHECK(r.n.at("fetched") == 5);
  CHECK(r.n.at("skipped") == 5);
  CHECK(r.n.at("failed") == 5);
  CHECK(r.n.at("unchanged") == 0);
  CHECK(r.log.find("ingestd resync: users: 5 rows skipped as invalid: role (role): expected true "
                   "or false, got string (e.g. usr_") != std::string::npos);

  // The text report says the same.
  auto [code, log] = env.ingestd({"resync", "--entity", "users", "--full"});
  CHECK(code == 1);
  CHECK(log.find("  failed              5") != std::string::npos);
  CHECK(log.find("5 rows skipped as invalid: role (role)") != std::string::npos);
}

TEST_CASE("resync refuses bad usage with exit 2 and says what is wrong") {
  Env env;
  auto expect = [&](std::vector<std::string> args, const std::string& message) {
    args.insert(args.begin(), "resync");
    auto [code, log] = env.ingestd(args);
    INFO(log);
    CHECK(code == 2);
    CHECK(log.find(message) != std::string::npos);
  };
  expect({"--entity", "clients", "--from", "2026-01-01"}, "--from needs --to");
  expect({"--entity", "clients", "--to", "2026-01-01"}, "--to needs --from");
  expect({"--entity", "nope", "--full"}, "no entity 'nope' with a table");
  expect({"--full"}, "--entity E is required");
  expect({"--entity", "clients"}, "give a window (--from D --to D) or --full");
  expect({"--entity", "clients", "--full", "--from", "2026-01-01", "--to", "2026-02-01"},
         "either --full or --from/--to");
  expect({"--entity", "clients", "--from", "yesterday", "--to", "2026-02-01"},
         "--from 'yesterday' is neither a date");
  expect({"--entity", "clients", "--from", "2026-02-01", "--to", "2026-01-01"},
         "--from must be before --to");
  expect({"--entity", "clients", "--full", "--timeout", "soon"}, "--timeout must be a duration");
}
