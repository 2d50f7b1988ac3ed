// Protects the whole pipeline end to end: `ingestd run` (fetcher, stager, reconciler in one
// process) against the upstream simulator over HTTP on 127.0.0.1 and a real Postgres. Every
// upstream record ends up in its production table; references to records that exist nowhere
// stay placeholders; SIGTERM stops all three stages cleanly.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <csignal>
#include <fstream>
#include <set>

#include "core/migrations.hpp"
#include "fetcher/http.hpp"
#include "reconciler/schema.hpp"
#include "tests/fetcher/sim.hpp"

using namespace ingestd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char* kEntities = R"y(
      clients:
        rest: {path: /rest/clients}
        page_size: 17
        table:
          columns:
            first_name: {path: firstName}
            last_name:  {path: lastName}
            email:      {path: email}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      users:
        rest: {path: /rest/users, pagination: next_link}
        page_size: 2
        table:
          columns:
            first_name: {path: firstName}
            role:       {path: role}
      pianos:
        rest: {path: /rest/pianos}
        page_size: 25
        table:
          columns:
            make:      {path: make}
            serial:    {path: serialNumber}
            client_id: {path: client.id, references: clients}
          placeholder: {make: "?"}
      timeline_entries:
        rest: {path: /rest/timeline_entries, pagination: offset, params: {limit: limit}}
        page_size: 30
        table:
          columns:
            kind:        {path: type}
            occurred_at: {path: occurredAt, type: timestamptz, required: true}
            piano_id:    {path: piano.id, references: pianos}
            user_id:     {path: user.id, references: users}
            client_id:   {path: client.id, references: clients}
      invoices:
        rest: {path: /rest/invoices}
        table:
          columns:
            total:     {path: total, type: numeric}
            client_id: {path: client.id, references: clients}
)y";

}  // namespace

TEST_CASE("ingestd run brings every upstream record into production and stops on SIGTERM") {
  test::TestDatabase db;
  test::TempDir dir;
  test::Simulator sim(dir.path(), {"--size", "40"});
  auto cfg_path = dir.path() / "ingestd.yaml";
  std::ofstream(cfg_path) << fmt::format(
      "database: {{url: \"{}\", retry_initial: 100ms, retry_max: 1s}}\n"
      "spool: {{dir: {}}}\nstaging: {{poll_interval: 200ms}}\n"
      "reconciler: {{poll_interval: 200ms}}\nlog: {{level: info}}\n"
      "monitor: {{listen: \"127.0.0.1:0\", poll_interval: 200ms}}\n"
      "sources:\n  sim:\n    base_url: {}\n    rate_limit: {{per_second: 0}}\n    "
      "entities:{}",
      db.url(), (dir.path() / "spool").string(), sim.base(), kEntities);
  auto loaded = config::load_file(cfg_path);
  REQUIRE(loaded.config);
  {
    auto conn = db.connect();
    (void)migrations::migrate(conn, *loaded.config);
    REQUIRE(reconciler::ensure_tables(conn, *loaded.config).problems.empty());
  }

  test::Child run({"run", "-c", cfg_path.string()}, dir.path() / "run.log");
  const std::vector<std::string> entities = {"clients", "users", "pianos", "timeline_entries",
                                             "invoices"};
  auto real_ids = [&](const std::string& table) {
    std::set<std::string> ids;
    auto conn = db.connect();
    auto r = conn.query(fmt::format("SELECT id FROM {} WHERE NOT is_placeholder", table));
    for (int i = 0; i < r.rows(); ++i) ids.emplace(r.get(i, 0));
    return ids;
  };
  auto upstream = [&](const std::string& entity) {
    auto v = sim.ids(entity);
    return std::set<std::string>(v.begin(), v.end());
  };
  bool all_in = test::eventually(
      [&] {
        for (const auto& e : entities)
          if (real_ids(e) != upstream(e)) return false;
        return db.count("SELECT count(*) FROM stg_timeline_entries WHERE NOT processed") == 0;
      },
      60s);
  CHECK_MESSAGE(all_in, run.log_text().substr(0, 4000));
  for (const auto& e : entities) {
    CHECK(real_ids(e) == upstream(e));
    CHECK(db.count(fmt::format("SELECT count(*) FROM {} WHERE version <> 1 AND NOT "
                               "is_placeholder",
                               e)) == 0);
    CHECK(db.count(fmt::format("SELECT count(*) FROM stg_{} WHERE outcome IS DISTINCT FROM "
                               "'applied'",
                               e)) == 0);
  }
  // The simulator names some pianos that exist nowhere: they stay placeholders, referenced.
  auto pianos = upstream("pianos");
  auto conn = db.connect();
  auto ph = conn.query("SELECT id FROM pianos WHERE is_placeholder");
  CHECK(ph.rows() > 0);  // ~2 % of the entries: not a vacuous check
  for (int i = 0; i < ph.rows(); ++i) CHECK(pianos.count(std::string(ph.get(i, 0))) == 0);
  CHECK(db.count("SELECT count(*) FROM pianos p WHERE is_placeholder AND NOT EXISTS (SELECT 1 "
                 "FROM timeline_entries t WHERE t.piano_id = p.id)") == 0);
  CHECK(db.count("SELECT count(*) FROM timeline_entries t JOIN pianos p ON p.id = t.piano_id") ==
        db.count("SELECT count(*) FROM timeline_entries WHERE piano_id IS NOT NULL"));

  // sync_status: every stage reported every entity's runs, and nothing failed.
  for (const auto& e : entities)
    for (const char* stage : {"fetcher", "stager", "reconciler"})
      CHECK_MESSAGE(db.count(fmt::format("SELECT count(*) FROM sync_status WHERE sync_type = '{}' "
                                         "AND stage = '{}'",
                                         e, stage)) > 0,
                    e, " ", stage);
  CHECK(db.count("SELECT count(*) FROM sync_status WHERE status = 'failed'") == 0);
  CHECK(db.count("SELECT records_fetched FROM sync_status WHERE stage = 'fetcher' AND "
                 "sync_type = 'pianos' AND status = 'success' ORDER BY started_at LIMIT 1") ==
        static_cast<std::int64_t>(upstream("pianos").size()));

  // The embedded monitor: /health turns healthy once a snapshot saw everything through, and
  // /metrics carries the stages' own counters next to the database-derived series.
  std::string port;
  REQUIRE(test::eventually(
      [&] {
        auto log = run.log_text();
        auto at = log.find("event=monitor.listening");
        if (at == std::string::npos) return false;
        auto p = log.find("port=", at);
        port = log.substr(p + 5, log.find_first_not_of("0123456789", p + 5) - p - 5);
        return true;
      },
      10s));
  StopToken never;
  fetcher::HttpClient http(5s, true, never);
  std::string base = "http://127.0.0.1:" + port;
  CHECK(test::eventually([&] { return http.get(base + "/health", {}).status == 200; }, 20s));
  auto metrics = http.get(base + "/metrics", {}).body;
  for (const char* series :
       {"ingestd_records_total{entity=\"pianos\",outcome=\"applied\",stage=\"reconciler\"}",
        "ingestd_upstream_requests_total{entity=\"pianos\",status=\"2xx\"}",
        "ingestd_spool_files_total{entity=\"pianos\",outcome=\"loaded\"}",
        "ingestd_freshness_score{entity=\"pianos\"} 100", "ingestd_process_open_fds"})
    CHECK_MESSAGE(metrics.find(series) != std::string::npos, series);

  run.signal(SIGTERM);
  CHECK(run.wait(10s) == 0);
  auto log = run.log_text();
  CHECK(log.find("event=fetcher.stopped") != std::string::npos);
  CHECK(log.find("event=stager.stopped") != std::string::npos);
  CHECK(log.find("event=reconciler.stopped") != std::string::npos);
  CHECK(log.find("event=run.stopped fetcher=0 stager=0 reconciler=0") != std::string::npos);
}
