// Protects `ingestd monitor` and `ingestd status` as an operator and Prometheus meet them: the
// real binary on 127.0.0.1:0 (port from the monitor.listening event) over a real Postgres.
// /ready turns 200 after the first snapshot; /health answers 503 with the reasons while an
// entity has dead rows and a failed run, and 200 once both are fixed; /metrics carries the
// database-derived series with the right values plus the process metrics, and `promtool check
// metrics` finds nothing in it; a database outage keeps the monitor serving (503, database
// unreachable) until the database is back; SIGTERM exits 0 within 5 s. `ingestd status` and
// `status --json` show the same counts and exit 1 / 0 (monitor/README.md).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/migrations.hpp"
#include "reconciler/schema.hpp"
#include "tests/support/support.hpp"

using namespace ingestd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

struct Reply {
  unsigned status = 0;  // 0: no answer
  std::string body;
};

Reply get(unsigned short port, const std::string& target) {
  try {
    asio::io_context ioc;
    asio::ip::tcp::socket socket(ioc);
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    bhttp::write(socket, req);
    boost::beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket, buffer, res);
    return {res.result_int(), res.body()};
  } catch (const std::exception&) {
    return {};
  }
}

// The port that `monitor.listening ... port=N` names.
unsigned short listening_port(const test::Child& child) {
  REQUIRE(child.wait_for_log("monitor.listening", 10s));
  auto log = child.log_text();
  auto at = log.find("port=", log.find("monitor.listening"));
  REQUIRE(at != std::string::npos);
  return static_cast<unsigned short>(std::stoi(log.substr(at + 5)));
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

const char* kMonitorYaml = "monitor:\n  listen: 127.0.0.1:0\n  poll_interval: 200ms\n";

// pianos and clients reconciled, invoices staged only; each fetched with a complete run a
// minute ago. pianos then gets 2 dead rows, 3 due rows and a failed newest fetcher run.
struct Fixture {
  std::string url;
  test::TempDir dir;
  fs::path config_path = dir.path() / "ingestd.yaml";
  config::Config cfg;

  explicit Fixture(std::string database_url) : url(std::move(database_url)) {
    test::ConfigOptions o{url, dir.path() / "spool", {"clients", "pianos", "invoices"}};
    o.entity_extra = {{"clients", test::reconciler_tables().at("clients")},
                      {"pianos", test::reconciler_tables().at("pianos")}};
    o.extra = kMonitorYaml;
    cfg = test::write_config(dir.path(), o);
    StopToken never;
    auto conn = pg::Connection::open({url, "test"}, never);
    (void)migrations::migrate(conn, cfg);
    REQUIRE(reconciler::ensure_tables(conn, cfg).problems.empty());
    int file = 0;
    for (const char* e : {"clients", "pianos", "invoices"}) {
      conn.exec_script(fmt::format(
          "INSERT INTO ingestd_spool_ledger (entity, file_name, outcome, run_id, page, bytes)"
          " VALUES ('{0}', 'f{1}', 'loaded', 'run-{0}', 1, 10);"
          "INSERT INTO ingestd_fetch_runs (entity, run_id, mode, pages, records, completed_at)"
          " VALUES ('{0}', 'run-{0}', 'incremental', 1, 5, now() - interval '1 minute');"
          "INSERT INTO sync_status (sync_type, stage, run_id, started_at, completed_at, status,"
          " records_fetched, error_summary, performance_metrics)"
          " VALUES ('{0}', 'fetcher', 'run-{0}', now() - interval '70 seconds',"
          " now() - interval '1 minute', 'success', 5, '{{\"statuses\": {{\"200\": 2}}}}',"
          " '{{\"throttled_seconds\": 0.5}}')",
          e, ++file));
    }
    conn.exec_script(
        "INSERT INTO stg_pianos (raw_data, external_id, content_hash, fetched_at, run_id,"
        " ledger_id, processed, outcome, next_attempt_at)"
        " SELECT '{}', 'p' || i, gen_random_uuid(), now(), 'r', 1, i <= 2,"
        " CASE WHEN i <= 2 THEN 'dead' END, now() - interval '1 second'"
        " FROM generate_series(1, 5) i;"
        "INSERT INTO sync_status (sync_type, stage, run_id, started_at, completed_at, status,"
        " error_summary) VALUES ('pianos', 'fetcher', 'run-bad', now() - interval '5 seconds',"
        " now() - interval '4 seconds', 'failed', '{\"error\": \"HTTP 500 on page 3\"}')");
  }

  // What an operator does: requeue and settle the dead rows; the next fetcher run succeeds.
  void fix() {
    StopToken never;
    auto conn = pg::Connection::open({url, "test"}, never);
    conn.exec_script(
        "UPDATE stg_pianos SET outcome = 'applied' WHERE outcome = 'dead';"
        "INSERT INTO sync_status (sync_type, stage, run_id, started_at, completed_at, status)"
        " VALUES ('pianos', 'fetcher', 'run-good', now() - interval '1 second', now(),"
        " 'success')");
  }

  // `ingestd status [args]`: exit code and output.
  std::pair<int, std::string> status(const std::vector<std::string>& args = {}) {
    static int n = 0;
    auto log = dir.path() / fmt::format("status{}.log", ++n);
    std::vector<std::string> argv = {"status", "-c", config_path.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    test::Child child(argv, log);
    auto code = child.wait(30s);
    REQUIRE(code.has_value());
    return {*code, test::read_text(log)};
  }
};

// `promtool check metrics` reads the exposition on stdin and prints every problem.
void check_with_promtool(const std::string& metrics, const fs::path& dir) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true") FAIL("promtool is missing (apt-get install prometheus)");
    MESSAGE("promtool not installed: exposition format not checked");
    return;
  }
  auto in = dir / "metrics.txt";
  auto out = dir / "promtool.txt";
  std::ofstream(in) << metrics;
  int rc = std::system(
      fmt::format("promtool check metrics < '{}' > '{}' 2>&1", in.string(), out.string()).c_str());
  INFO(test::read_text(out));
  CHECK(rc == 0);
  CHECK(test::read_text(out).empty());
}

}  // namespace

TEST_CASE(
    "ingestd monitor serves health and metrics that follow the database and stops on SIGTERM") {
  test::TestDatabase db;
  Fixture f(db.url());
  test::Child monitor({"monitor", "-c", f.config_path.string()}, f.dir.path() / "monitor.log");
  const auto port = listening_port(monitor);

  CHECK(test::eventually([&] { return get(port, "/ready").status == 200; }, 10s));
  auto health = get(port, "/health");
  INFO(health.body);
  CHECK(health.status == 503);
  CHECK(contains(health.body, "{\"status\":\"failing\","));
  CHECK(contains(health.body, "\"records_pending\":3,\"dead\":2"));
  CHECK(contains(health.body, "2 dead rows: ingestd requeue --entity pianos --dead"));
  CHECK(contains(health.body, "the last fetcher run failed (HTTP 500 on page 3)"));
  CHECK(contains(health.body, "\"invoices\":{\"last_sync\":\""));

  // The counters from sync_status's history come with the second snapshot.
  Reply metrics;
  CHECK(test::eventually(
      [&] {
        metrics = get(port, "/metrics");
        return contains(metrics.body, "ingestd_runs_total{");
      },
      10s));
  CHECK(metrics.status == 200);
  const std::string expected[] = {
      "ingestd_entity_health{entity=\"pianos\"} 2\n",
      "ingestd_entity_health{entity=\"clients\"} 0\n",
      "ingestd_freshness_score{entity=\"clients\"} 100\n",
      "ingestd_staging_backlog{entity=\"pianos\",state=\"dead\"} 2\n",
      "ingestd_staging_backlog{entity=\"pianos\",state=\"due\"} 3\n",
      "ingestd_runs_total{entity=\"pianos\",stage=\"fetcher\",status=\"failed\"} 1\n",
      "ingestd_runs_total{entity=\"pianos\",stage=\"fetcher\",status=\"success\"} 1\n",
      "ingestd_run_records_total{entity=\"invoices\",stage=\"fetcher\",outcome=\"fetched\"} 5\n",
      "ingestd_run_upstream_requests_total{entity=\"clients\",status=\"2xx\"} 2\n",
      "ingestd_run_upstream_throttled_seconds_total{entity=\"clients\"} 0.5\n",
      "ingestd_run_duration_seconds_count{entity=\"clients\",stage=\"fetcher\"} 1\n",
      "ingestd_run_duration_seconds_bucket{entity=\"clients\",stage=\"fetcher\",le=\"5\"} 0\n",
      "ingestd_run_duration_seconds_bucket{entity=\"clients\",stage=\"fetcher\",le=\"15\"} 1\n",
      "ingestd_placeholders_open{entity=\"pianos\"} 0\n",
      "ingestd_monitor_database_up 1\n",
      "ingestd_alerts_total{result=\"sent\"} 0\n",
      "# TYPE ingestd_process_open_fds gauge\n",
  };
  for (const auto& line : expected) CHECK_MESSAGE(contains(metrics.body, line), line);
  check_with_promtool(metrics.body, f.dir.path());

  // The operator's view of the same database.
  auto [code, text] = f.status();
  INFO(text);
  CHECK(code == 1);
  CHECK(contains(text, "Actions required:\n  pianos: the last fetcher run failed"));
  CHECK(contains(text, "  pianos: 2 dead rows: ingestd requeue --entity pianos --dead"));
  auto [json_code, json] = f.status({"--json"});
  CHECK(json_code == 1);
  CHECK(contains(json, "\"pianos\":{\"status\":\"failing\""));
  CHECK(contains(json, "\"due\":3,\"retrying\":0,\"dead\":2"));

  f.fix();
  CHECK(test::eventually([&] { return get(port, "/health").status == 200; }, 10s));
  health = get(port, "/health");
  CHECK(contains(health.body, "{\"status\":\"healthy\","));
  CHECK(test::eventually(
      [&] {
        return contains(get(port, "/metrics").body, "ingestd_entity_health{entity=\"pianos\"} 0\n");
      },
      10s));
  auto [ok_code, ok_text] = f.status();
  INFO(ok_text);
  CHECK(ok_code == 0);
  CHECK(contains(ok_text, "No action required."));

  monitor.signal(SIGTERM);
  CHECK(monitor.wait(5s) == std::optional<int>(0));
}

TEST_CASE("ingestd monitor keeps serving through a database outage and recovers") {
  test::TempCluster cluster;  // started
  Fixture f(cluster.admin_url());
  f.fix();
  test::Child monitor({"monitor", "-c", f.config_path.string()}, f.dir.path() / "monitor.log");
  const auto port = listening_port(monitor);
  CHECK(test::eventually([&] { return get(port, "/ready").status == 200; }, 10s));

  cluster.stop();
  CHECK(test::eventually([&] { return get(port, "/ready").status == 503; }, 10s));
  auto health = get(port, "/health");
  CHECK(health.status == 503);
  CHECK(contains(health.body, "\"database\":\"unreachable\""));
  auto metrics = get(port, "/metrics").body;
  CHECK(contains(metrics, "ingestd_monitor_database_up 0\n"));
  CHECK_FALSE(contains(metrics, "ingestd_entity_health"));  // no stale figures
  check_with_promtool(metrics, f.dir.path());

  cluster.start();
  CHECK(test::eventually([&] { return get(port, "/ready").status == 200; }, 20s));
  CHECK(get(port, "/health").status == 200);
  monitor.signal(SIGTERM);
  CHECK(monitor.wait(5s) == std::optional<int>(0));
}

TEST_CASE("ingestd monitor exits 1 naming the address when its port is taken") {
  test::TestDatabase db;
  Fixture f(db.url());
  test::Child first({"monitor", "-c", f.config_path.string()}, f.dir.path() / "first.log");
  const auto port = listening_port(first);
  auto taken = f.dir.path() / "taken.yaml";
  auto yaml = test::read_text(f.config_path);
  yaml.replace(yaml.find("127.0.0.1:0"), 11, fmt::format("127.0.0.1:{}", port));
  std::ofstream(taken) << yaml;
  test::Child second({"monitor", "-c", taken.string()}, f.dir.path() / "second.log");
  CHECK(second.wait(10s) == std::optional<int>(1));
  CHECK(contains(second.log_text(), fmt::format("127.0.0.1:{}", port)));
  first.signal(SIGTERM);
  CHECK(first.wait(5s) == std::optional<int>(0));
}
