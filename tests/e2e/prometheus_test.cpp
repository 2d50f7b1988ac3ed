// Protects what an operator's Prometheus sees, end to end: `ingestd run` syncs the upstream
// simulator into a real Postgres, then a real Prometheus (the Debian package, a child process on
// 127.0.0.1) scrapes the embedded monitor's /metrics and we ask Prometheus's own HTTP API, not
// the exposition text. This catches what a text match cannot: an exposition Prometheus refuses
// or half-parses (bad TYPE lines, duplicate series, a wrong content type), label names the
// dashboards and alert rules (deploy/) would not match, and values that do not agree with the
// database after a known sync (records applied, runs, backlog, placeholders, freshness, health).
// Then a spool file that is not a spool document is dropped in for one entity: the stager
// quarantines it and Prometheus sees that entity's health leave 0 while the others stay
// healthy. Without /usr/bin/prometheus the test fails when $CI is set and is skipped otherwise.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <simdjson.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>

#include "core/migrations.hpp"
#include "fetcher/http.hpp"
#include "reconciler/schema.hpp"
#include "tests/fetcher/sim.hpp"

#ifndef INGESTD_PROMETHEUS_BIN
#define INGESTD_PROMETHEUS_BIN "/usr/bin/prometheus"
#endif

using namespace ingestd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// pianos reference clients; timeline entries reference pianos (~2 % of them a piano that exists
// nowhere: those stay open placeholders), users and clients.
constexpr const char* kEntities = R"y(
      clients:
        rest: {path: /rest/clients}
        page_size: 17
        table:
          columns:
            first_name: {path: firstName}
            last_name:  {path: lastName}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      users:
        rest: {path: /rest/users, pagination: next_link}
        page_size: 5
        table:
          columns:
            first_name: {path: firstName}
      pianos:
        rest: {path: /rest/pianos}
        page_size: 25
        table:
          columns:
            make:      {path: make}
            client_id: {path: client.id, references: clients}
          placeholder: {make: "?"}
      timeline_entries:
        rest: {path: /rest/timeline_entries, pagination: offset, params: {limit: limit}}
        page_size: 30
        table:
          columns:
            kind:      {path: type}
            piano_id:  {path: piano.id, references: pianos}
            user_id:   {path: user.id, references: users}
            client_id: {path: client.id, references: clients}
)y";

const std::vector<std::string> kNames = {"clients", "users", "pianos", "timeline_entries"};

struct Sample {
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Prometheus's HTTP API (/api/v1/query): instant vectors as Prometheus evaluates them.
class PrometheusApi {
 public:
  explicit PrometheusApi(std::string base) : http_(5s, true, never_), base_(std::move(base)) {}

  bool ready() {
    try {
      return http_.get(base_ + "/-/ready", {}).status == 200;
    } catch (const fetcher::TransportError&) {
      return false;
    }
  }

  // The samples of `promql` now; empty when Prometheus has no such series (yet) or did not
  // answer. A query Prometheus rejects fails the test: it is a typo here, not a wait.
  std::vector<Sample> query(const std::string& promql) {
    fetcher::HttpResponse r;
    try {
      r = http_.get(base_ + "/api/v1/query?query=" + fetcher::url_encode(promql), {});
    } catch (const fetcher::TransportError&) {
      return {};
    }
    REQUIRE_MESSAGE(r.status == 200, promql, ": ", r.body);
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE_MESSAGE(parser.parse(r.body).get(doc) == simdjson::SUCCESS, r.body);
    std::vector<Sample> out;
    for (simdjson::dom::element item : doc["data"]["result"].get_array()) {
      Sample s;
      for (auto [key, val] : item["metric"].get_object())
        s.labels.emplace(std::string(key), std::string(val.get_string().value()));
      // "value": [<unix time>, "<sample as text>"]
      s.value = std::stod(std::string(item["value"].at(1).get_string().value()));
      out.push_back(std::move(s));
    }
    return out;
  }

  // The value of a query that names exactly one series; NaN while it does not.
  double value(const std::string& promql) {
    auto v = query(promql);
    return v.size() == 1 ? v[0].value : std::nan("");
  }

 private:
  StopToken never_;
  fetcher::HttpClient http_;
  std::string base_;
};

// A port nothing listens on now: bind port 0, read what the kernel picked, let it go.
unsigned short free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  socklen_t len = sizeof addr;
  bool ok = ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr) == 1 &&
            ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  REQUIRE(ok);
  return ntohs(addr.sin_port);
}

std::string listening_port(const test::Child& run) {
  REQUIRE(run.wait_for_log("event=monitor.listening", 20s));
  auto log = run.log_text();
  auto p = log.find("port=", log.find("event=monitor.listening")) + 5;
  return log.substr(p, log.find_first_not_of("0123456789", p) - p);
}

std::string tail(const std::string& text, std::size_t n = 3000) {
  return text.size() <= n ? text : text.substr(text.size() - n);
}

}  // namespace

TEST_CASE("a real Prometheus scraping ingestd run sees the synced values and a broken entity") {
  const std::string prometheus = INGESTD_PROMETHEUS_BIN;
  if (!fs::exists(prometheus)) {
    const char* ci = std::getenv("CI");
    if (ci && *ci) FAIL("Prometheus is missing at ", prometheus, " (apt-get install prometheus)");
    MESSAGE("skipped: no Prometheus at ", prometheus, " (apt-get install prometheus)");
    return;
  }

  test::TestDatabase db;
  test::TempDir dir;
  test::Simulator sim(dir.path(), {"--size", "40"});
  const auto spool = dir.path() / "spool";
  auto cfg_path = dir.path() / "ingestd.yaml";
  std::ofstream(cfg_path) << fmt::format(
      "database: {{url: \"{}\", retry_initial: 100ms, retry_max: 1s}}\n"
      "spool: {{dir: {}}}\nstaging: {{poll_interval: 200ms}}\n"
      "reconciler: {{poll_interval: 200ms}}\nlog: {{level: info}}\n"
      "monitor: {{listen: \"127.0.0.1:0\", poll_interval: 200ms}}\n"
      "sources:\n  sim:\n    base_url: {}\n    rate_limit: {{per_second: 0}}\n    "
      "entities:{}",
      db.url(), spool.string(), sim.base(), kEntities);
  auto loaded = config::load_file(cfg_path);
  REQUIRE(loaded.config);
  {
    auto conn = db.connect();
    (void)migrations::migrate(conn, *loaded.config);
    REQUIRE(reconciler::ensure_tables(conn, *loaded.config).problems.empty());
  }

  test::Child run({"run", "-c", cfg_path.string()}, dir.path() / "run.log");
  const auto port = listening_port(run);

  // The known sync: every upstream record in production, nothing left in staging, and the
  // monitor's own verdict healthy. Only then does Prometheus start, so every sample it scrapes
  // describes this state.
  auto synced = [&] {
    for (const auto& e : kNames) {
      auto ids = sim.ids(e);
      if (db.count(fmt::format("SELECT count(*) FROM {} WHERE NOT is_placeholder", e)) !=
              static_cast<std::int64_t>(ids.size()) ||
          db.count(fmt::format("SELECT count(*) FROM stg_{} WHERE NOT processed", e)) != 0)
        return false;
    }
    return true;
  };
  REQUIRE_MESSAGE(test::eventually(synced, 60s), tail(run.log_text()));
  StopToken never;
  fetcher::HttpClient http(5s, true, never);
  REQUIRE_MESSAGE(test::eventually(
                      [&] {
                        try {
                          return http.get("http://127.0.0.1:" + port + "/health", {}).status == 200;
                        } catch (const fetcher::TransportError&) {
                          return false;
                        }
                      },
                      30s),
                  tail(run.log_text()));

  // Prometheus: one job scraping the monitor every second. A port taken between free_port()
  // and Prometheus's bind makes it exit: try another.
  test::TempDir prom_dir;
  std::ofstream(prom_dir.path() / "prometheus.yml") << fmt::format(
      "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
      "scrape_configs:\n  - job_name: ingestd\n    static_configs:\n"
      "      - targets: ['127.0.0.1:{}']\n",
      port);
  const auto prom_log = prom_dir.path() / "prometheus.log";
  std::unique_ptr<test::Child> prom;
  std::unique_ptr<PrometheusApi> api;
  for (int attempt = 0; attempt < 3 && !api; ++attempt) {
    auto web = free_port();
    prom = std::make_unique<test::Child>(
        prometheus,
        std::vector<std::string>{"--config.file=" + (prom_dir.path() / "prometheus.yml").string(),
                                 "--storage.tsdb.path=" + (prom_dir.path() / "data").string(),
                                 fmt::format("--web.listen-address=127.0.0.1:{}", web),
                                 "--log.level=warn"},
        prom_log);
    auto candidate = std::make_unique<PrometheusApi>(fmt::format("http://127.0.0.1:{}", web));
    bool exited = false;
    bool ready = test::eventually(
        [&] {
          exited = prom->wait(0ms).has_value();
          return exited || candidate->ready();
        },
        30s);
    if (ready && !exited) api = std::move(candidate);
  }
  REQUIRE_MESSAGE(api, "Prometheus did not become ready: ", tail(test::read_text(prom_log)));

  // Its first scrape comes a few seconds after start; wait for the series, not for a time.
  const std::string job = "{job=\"ingestd\"}";
  bool scraped = test::eventually(
      [&] {
        return api->value("up" + job) == 1 &&
               api->query("ingestd_entity_health" + job).size() == kNames.size() &&
               !api->query("ingestd_records_total" + job).empty();
      },
      60s);
  REQUIRE_MESSAGE(scraped, "Prometheus log: ", tail(test::read_text(prom_log)),
                  "\nup: ", api->value("up" + job));

  CHECK(api->value("up" + job) == 1);
  for (const auto& s : api->query("ingestd_entity_health" + job))
    CHECK_MESSAGE(s.value == 0, s.labels.at("entity"));
  CHECK(api->value("ingestd_freshness_score{entity=\"pianos\"}") == 100);
  CHECK(api->value("ingestd_monitor_database_up") == 1);

  // Each upstream piano staged once and applied once: the process counter, the staging table
  // and the simulator agree.
  const auto pianos = static_cast<std::int64_t>(sim.ids("pianos").size());
  CHECK(pianos > 0);
  CHECK(db.count("SELECT count(*) FROM stg_pianos WHERE outcome = 'applied'") == pianos);
  CHECK(api->value("ingestd_records_total{stage=\"reconciler\",outcome=\"applied\","
                   "entity=\"pianos\"}") == static_cast<double>(pianos));
  CHECK(api->value("ingestd_records_total{stage=\"stager\",outcome=\"staged\","
                   "entity=\"pianos\"}") == static_cast<double>(pianos));

  auto due = api->query("ingestd_staging_backlog{state=\"due\"}");
  CHECK(due.size() == kNames.size());
  for (const auto& s : due) CHECK_MESSAGE(s.value == 0, s.labels.at("entity"));

  const auto open = db.count("SELECT count(*) FROM pianos WHERE is_placeholder");
  CHECK(open > 0);  // the simulator's dangling piano references: not a vacuous check
  CHECK(api->value("ingestd_placeholders_open{entity=\"pianos\"}") == static_cast<double>(open));

  const auto fetcher_runs = db.count(
      "SELECT count(*) FROM sync_status WHERE stage = 'fetcher' AND sync_type = 'pianos' AND "
      "status = 'success'");
  CHECK(fetcher_runs >= 1);
  CHECK(api->value("ingestd_runs_total{stage=\"fetcher\",status=\"success\","
                   "entity=\"pianos\"}") == static_cast<double>(fetcher_runs));

  auto ok_requests = api->query("ingestd_upstream_requests_total{status=\"2xx\"}");
  CHECK(ok_requests.size() == kNames.size());
  for (const auto& s : ok_requests) CHECK_MESSAGE(s.value > 0, s.labels.at("entity"));

  // Break pianos: a file in its spool folder that is not a spool document (written under a
  // dot name and renamed, as the spool contract wants). The stager quarantines it; the
  // monitor calls pianos degraded; Prometheus sees it on a later scrape.
  {
    auto folder = spool / "incoming" / "pianos";
    std::ofstream(folder / ".broken.json.tmp") << "<html>502 Bad Gateway</html>";
    fs::rename(folder / ".broken.json.tmp", folder / "broken.json");
  }
  bool broken = test::eventually(
      [&] { return api->value("ingestd_entity_health{entity=\"pianos\"}") >= 1; }, 60s);
  CHECK_MESSAGE(broken, tail(run.log_text()));
  CHECK(db.count("SELECT count(*) FROM ingestd_quarantine WHERE entity = 'pianos' AND "
                 "resolved_at IS NULL") == 1);
  CHECK(test::eventually(
      [&] { return api->value("ingestd_quarantined_files{entity=\"pianos\"}") == 1; }, 10s));
  CHECK(api->value("ingestd_spool_files_total{entity=\"pianos\",outcome=\"quarantined\"}") == 1);
  for (const char* other : {"clients", "users", "timeline_entries"})
    CHECK_MESSAGE(api->value(fmt::format("ingestd_entity_health{{entity=\"{}\"}}", other)) == 0,
                  other);

  prom->signal(SIGTERM);
  CHECK(prom->wait(15s) == 0);
  run.signal(SIGTERM);
  CHECK(run.wait(10s) == 0);
}
