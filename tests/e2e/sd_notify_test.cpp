// Protects what systemd hears from every long-lived command (core/notify.hpp, deploy/systemd):
// READY=1 once (for `ingestd run`, once all four stages started); WATCHDOG=1 again and again
// while every loop runs, and none while one loop is stuck (a statement waiting on a lock, a
// request the upstream does not answer), so systemd restarts a hung process; the fetcher
// pinging through a Retry-After pause and a backoff longer than the watchdog; STOPPING=1 and
// exit 0 after SIGTERM. The real binary runs as systemd starts it: $NOTIFY_SOCKET names a real
// AF_UNIX datagram socket of the test, $WATCHDOG_USEC is set and $WATCHDOG_PID is its own pid.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/migrations.hpp"
#include "reconciler/schema.hpp"
#include "tests/fetcher/sim.hpp"

using namespace ingestd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// WATCHDOG_USEC: a ping every 0.5 s at most; a loop silent for 1 s stops them.
constexpr std::chrono::milliseconds kWatchdog = 2s;

// The service manager's end: a datagram socket that keeps every notification, in order.
class NotifySocket {
 public:
  explicit NotifySocket(fs::path path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.string().size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path_.c_str(), path_.string().size() + 1);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    // Read at once, as systemd does: a full queue would block the sender.
    reader_ = std::jthread([this](const std::stop_token& st) { read(st); });
  }
  ~NotifySocket() {
    reader_.request_stop();
    reader_.join();
    ::close(fd_);
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  [[nodiscard]] std::string path() const { return path_.string(); }
  [[nodiscard]] std::vector<std::string> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  // Datagrams that hold `line` as one of their lines ("WATCHDOG=1").
  [[nodiscard]] int count(std::string_view line) const {
    int n = 0;
    for (const auto& m : messages()) n += has_line(m, line) ? 1 : 0;
    return n;
  }
  bool wait_count(std::string_view line, int n, std::chrono::milliseconds timeout) const {
    return test::eventually([&] { return count(line) >= n; }, timeout);
  }
  static bool has_line(std::string_view message, std::string_view line) {
    for (std::size_t at = 0; at <= message.size();) {
      auto nl = message.find('\n', at);
      if (message.substr(at, nl == std::string_view::npos ? nl : nl - at) == line) return true;
      if (nl == std::string_view::npos) break;
      at = nl + 1;
    }
    return false;
  }

 private:
  void read(const std::stop_token& st) {
    char buf[4096];
    while (!st.stop_requested()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::lock_guard lock(mu_);
      messages_.emplace_back(buf, static_cast<std::size_t>(n));
    }
  }

  fs::path path_;
  int fd_ = -1;
  mutable std::mutex mu_;
  std::vector<std::string> messages_;
  std::jthread reader_;
};

// `ingestd ARGS` as systemd runs a Type=notify unit with WatchdogSec=: through sh only to set
// WATCHDOG_PID to the pid that exec keeps.
std::unique_ptr<test::Child> start_service(const std::vector<std::string>& args,
                                           const fs::path& log, const NotifySocket& sock) {
  std::vector<std::string> argv = {"-c", R"(WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@")",
                                   test::binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto usec = std::chrono::duration_cast<std::chrono::microseconds>(kWatchdog).count();
  return std::make_unique<test::Child>(
      "/bin/sh", argv, log,
      std::map<std::string, std::string>{{"NOTIFY_SOCKET", sock.path()},
                                         {"WATCHDOG_USEC", std::to_string(usec)}});
}

// READY=1, then WATCHDOG=1 again and again.
void expect_running(const NotifySocket& sock, const test::Child& child) {
  REQUIRE_MESSAGE(sock.wait_count("READY=1", 1, 30s), child.log_text());
  REQUIRE_MESSAGE(sock.wait_count("WATCHDOG=1", 3, 30s), child.log_text());
}

// Once `stuck` holds (a loop is blocked), no WATCHDOG=1 may arrive; after `release` they
// come again. The stuck loop beat last before it blocked, so from half the watchdog interval
// later on nothing may ping: the sleeps bound a window of silence, they time nothing.
void expect_silence_while_stuck(const NotifySocket& sock, const test::Child& child,
                                const std::function<bool()>& stuck,
                                const std::function<void()>& release) {
  REQUIRE_MESSAGE(test::eventually(stuck, 30s), child.log_text());
  std::this_thread::sleep_for(kWatchdog);
  int before = sock.count("WATCHDOG=1");
  std::this_thread::sleep_for(2 * kWatchdog);
  CHECK_MESSAGE(sock.count("WATCHDOG=1") == before, "pings went on while a loop was stuck");
  release();
  CHECK_MESSAGE(sock.wait_count("WATCHDOG=1", before + 2, 30s), child.log_text());
}

// SIGTERM: STOPPING=1 and exit 0; READY=1 came exactly once, before it.
void expect_clean_stop(const NotifySocket& sock, test::Child& child) {
  child.signal(SIGTERM);
  auto code = child.wait(10s);
  CHECK_MESSAGE(code == std::optional<int>(0), child.log_text());
  auto all = sock.messages();
  std::vector<std::size_t> ready, stopping;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (NotifySocket::has_line(all[i], "READY=1")) ready.push_back(i);
    if (NotifySocket::has_line(all[i], "STOPPING=1")) stopping.push_back(i);
  }
  CHECK(ready.size() == 1);
  REQUIRE(stopping.size() == 1);
  CHECK(ready.front() < stopping.front());
}

// Connections of `application` in the test's database that wait for a lock.
std::function<bool()> waiting_on_lock(const test::TestDatabase& db, const std::string& app) {
  return [&db, app] {
    return db.count(fmt::format("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND application_name = '{}' AND "
                                "wait_event_type = 'Lock'",
                                app)) > 0;
  };
}

struct Database {
  test::TestDatabase db;
  test::TempDir dir;
  config::Config cfg;

  explicit Database(test::ConfigOptions o) {
    o.database_url = db.url();
    o.spool_dir = dir.path() / "spool";
    cfg = test::write_config(dir.path(), o);
    auto conn = db.connect();
    (void)migrations::migrate(conn, cfg);
    REQUIRE(reconciler::ensure_tables(conn, cfg).problems.empty());
  }
  [[nodiscard]] std::string config_path() const { return (dir.path() / "ingestd.yaml").string(); }
};

constexpr const char* kFetcherEntities = R"y(
      clients:
        rest: {path: /rest/clients}
        page_size: 20
        schedule: {every: 1s}
      users:
        rest: {path: /rest/users}
        page_size: 20
        schedule: {every: 1s}
)y";

}  // namespace

TEST_CASE("ingestd stager pings only while both workers loop and says READY and STOPPING") {
  Database d({"", "", {"clients"}});
  NotifySocket sock(d.dir.path() / "notify.sock");
  auto child = start_service({"stager", "-c", d.config_path()}, d.dir.path() / "stager.log", sock);
  expect_running(sock, *child);

  // One worker stuck on the ledger (another transaction holds it): its file's batch waits.
  auto lock = d.db.connect();
  lock.exec_script("BEGIN; LOCK TABLE ingestd_spool_ledger IN ACCESS EXCLUSIVE MODE");
  test::spool_page(d.cfg.spool_dir, "clients", {R"({"id":"c1"})", R"({"id":"c2"})"});
  expect_silence_while_stuck(sock, *child, waiting_on_lock(d.db, "ingestd-stager"),
                             [&] { lock.exec_script("ROLLBACK"); });
  // The other worker kept beating: the log names the one that went silent.
  CHECK(child->log_text().find("event=notify.loop_silent loop=stager.worker") != std::string::npos);
  CHECK(test::eventually([&] { return d.db.count("SELECT count(*) FROM stg_clients") == 2; }, 30s));
  expect_clean_stop(sock, *child);
}

namespace {
// A long-lived stage with a single kind of loop: READY and pings, then `table` held locked by
// another transaction so that the loop waits on it (session application_name `app`): the
// pings stop, and come back once the lock is released; then a clean stop.
void pings_stop_while_locked(const test::ConfigOptions& o, const std::string& command,
                             const std::string& table, const std::string& app) {
  Database d(o);
  NotifySocket sock(d.dir.path() / "notify.sock");
  auto child =
      start_service({command, "-c", d.config_path()}, d.dir.path() / (command + ".log"), sock);
  expect_running(sock, *child);
  auto lock = d.db.connect();
  lock.exec_script("BEGIN; LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE");
  expect_silence_while_stuck(sock, *child, waiting_on_lock(d.db, app),
                             [&] { lock.exec_script("ROLLBACK"); });
  expect_clean_stop(sock, *child);
}
}  // namespace

TEST_CASE("ingestd reconciler pings only while its workers loop and says READY and STOPPING") {
  test::ConfigOptions o{"", "", {"clients"}};
  o.entity_extra = {{"clients", test::reconciler_tables().at("clients")}};
  o.extra = "reconciler:\n  poll_interval: 200ms\n";
  pings_stop_while_locked(o, "reconciler", "stg_clients", "ingestd-reconciler");
}

TEST_CASE("ingestd monitor pings only while its poll loop runs and says READY and STOPPING") {
  test::ConfigOptions o{"", "", {"clients"}};
  o.extra = "monitor:\n  listen: 127.0.0.1:0\n  poll_interval: 200ms\n";
  // A snapshot stuck behind a lock (a migration's ALTER TABLE, say) hangs the poll loop.
  pings_stop_while_locked(o, "monitor", "sync_status", "ingestd-monitor");
}

TEST_CASE("ingestd fetcher pings while its entity loops run and not while one waits on a request") {
  test::TempDir dir;
  test::Simulator sim(dir.path(), {"--size", "10"});
  auto cfg_path = dir.path() / "ingestd.yaml";
  std::ofstream(cfg_path) << fmt::format(
      "database: {{url: \"postgresql://127.0.0.1:9/none\"}}\nspool: {{dir: {}}}\n"
      "sources:\n  sim:\n    base_url: {}\n    rate_limit: {{per_second: 0}}\n    timeout: 60s\n"
      "    entities:{}",
      (dir.path() / "spool").string(), sim.base(), kFetcherEntities);
  NotifySocket sock(dir.path() / "notify.sock");
  auto child =
      start_service({"fetcher", "-c", cfg_path.string()}, dir.path() / "fetcher.log", sock);
  expect_running(sock, *child);
  REQUIRE(
      test::eventually([&] { return test::run_ends(dir.path() / "spool", "clients") > 0; }, 30s));

  // The next request is answered after 12 s (within the 60 s timeout): its entity loop waits
  // in curl while the other entity goes on with its runs.
  auto requests = sim.request_times().size();
  sim.fault(R"({"kind":"slow","count":1,"delay_ms":12000})");
  expect_silence_while_stuck(
      sock, *child, [&] { return sim.request_times().size() > requests; }, [] {});
  CHECK(child->log_text().find("event=notify.loop_silent loop=fetcher.") != std::string::npos);
  expect_clean_stop(sock, *child);
}

TEST_CASE(
    "ingestd fetcher keeps pinging through a Retry-After and a backoff longer than the watchdog") {
  test::TempDir dir;
  // A 429 asking for 6 s, then a 500 that the 3-6 s backoff answers: each pause is three
  // watchdog intervals, and the only loop of the process waits through both.
  test::Simulator sim(dir.path(), {"--size", "10", "--fault", "429:1:6", "--fault", "500:1"});
  auto cfg_path = dir.path() / "ingestd.yaml";
  std::ofstream(cfg_path) << fmt::format(
      "database: {{url: \"postgresql://127.0.0.1:9/none\"}}\nspool: {{dir: {}}}\n"
      "sources:\n  sim:\n    base_url: {}\n    rate_limit: {{per_second: 0}}\n"
      "    retry: {{initial: 6s, max: 6s}}\n    entities:\n"
      "      clients:\n        rest: {{path: /rest/clients}}\n",
      (dir.path() / "spool").string(), sim.base());
  NotifySocket sock(dir.path() / "notify.sock");
  auto child =
      start_service({"fetcher", "-c", cfg_path.string()}, dir.path() / "fetcher.log", sock);
  REQUIRE_MESSAGE(sock.wait_count("READY=1", 1, 30s), child->log_text());
  REQUIRE_MESSAGE(child->wait_for_log("event=fetcher.retry", 30s), child->log_text());
  int before = sock.count("WATCHDOG=1");
  REQUIRE(test::eventually([&] { return sim.request_times().size() >= 3; }, 60s));
  // About 9-12 s at most one ping per 0.5 s: ~20 expected; a loop that did not beat while it
  // waited would send none.
  CHECK_MESSAGE(sock.count("WATCHDOG=1") - before >= 6, child->log_text());
  CHECK(test::eventually([&] { return test::run_ends(dir.path() / "spool", "clients") > 0; }, 30s));
  expect_clean_stop(sock, *child);
}

TEST_CASE("ingestd run says READY once all four stages started and pings only while all loop") {
  test::TempDir dir;
  test::Simulator sim(dir.path(), {"--size", "10"});
  test::ConfigOptions o{"", "", {"clients"}};
  o.entity_extra = {{"clients", test::reconciler_tables().at("clients")}};
  o.extra =
      "monitor:\n  listen: 127.0.0.1:0\n  poll_interval: 200ms\n"
      "reconciler:\n  poll_interval: 200ms\n";
  Database d(o);
  // Point the source at the simulator (config_yaml names a closed port).
  auto yaml = test::read_text(d.config_path());
  auto at = yaml.find("http://127.0.0.1:9/graphql");
  REQUIRE(at != std::string::npos);
  yaml.replace(at, std::string("http://127.0.0.1:9/graphql").size(), sim.base());
  std::ofstream(d.config_path()) << yaml;

  NotifySocket sock(d.dir.path() / "notify.sock");
  auto child = start_service({"run", "-c", d.config_path()}, d.dir.path() / "run.log", sock);
  REQUIRE_MESSAGE(sock.wait_count("READY=1", 1, 30s), child->log_text());
  // READY=1 followed the last stage's start: every one had logged it by then.
  auto log = child->log_text();
  for (const char* started : {"event=monitor.listening", "event=fetcher.started",
                              "event=stager.started", "event=reconciler.started"})
    CHECK_MESSAGE(log.find(started) != std::string::npos, started);
  std::string ready;
  for (const auto& m : sock.messages())
    if (NotifySocket::has_line(m, "READY=1")) ready = m;
  for (const char* status : {"serving /metrics", "fetching", "staging", "reconciling"})
    CHECK_MESSAGE(ready.find(status) != std::string::npos, ready);
  expect_running(sock, *child);
  CHECK(test::eventually([&] { return d.db.count("SELECT count(*) FROM clients") == 10; }, 60s));

  // Only the monitor's loop is stuck (the stages never touch the quarantine table here): the
  // fetcher, stager and reconciler loops beating does not make the process look alive.
  auto lock = d.db.connect();
  lock.exec_script("BEGIN; LOCK TABLE ingestd_quarantine IN ACCESS EXCLUSIVE MODE");
  expect_silence_while_stuck(sock, *child, waiting_on_lock(d.db, "ingestd-monitor"),
                             [&] { lock.exec_script("ROLLBACK"); });
  CHECK(child->log_text().find("event=notify.loop_silent loop=monitor.poll") != std::string::npos);
  expect_clean_stop(sock, *child);
}
