#include "monitor/monitor.hpp"

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/http_server.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/notify.hpp"
#include "core/pg.hpp"
#include "core/stop.hpp"
#include "monitor/alerts.hpp"
#include "monitor/db_metrics.hpp"

namespace ingestd::monitor {
namespace {

constexpr const char* kPrometheusText = "text/plain; version=0.0.4; charset=utf-8";
constexpr const char* kJson = "application/json";
// A snapshot is a handful of index walks; one that runs this long is stuck behind a lock
// (an ALTER TABLE of a migration) and is better abandoned and retried next poll.
constexpr const char* kStatementTimeout = "SET statement_timeout = '60s'";

}  // namespace

struct Monitor::Impl {
  explicit Impl(const config::Config& c) : cfg(c), alerter(c) {}

  const config::Config& cfg;
  StopToken stop;
  Alerter alerter;
  std::unique_ptr<http::Server> server;
  std::thread loop;

  mutable std::mutex mu;
  // Guarded by mu. `snapshot` is null until the first snapshot and whenever the last one
  // failed: stale numbers would hide an outage, so /health and /metrics show none.
  std::shared_ptr<const Snapshot> snapshot;
  std::string snapshot_text;            // its metric families, serialized once per poll
  std::string database = "connecting";  // connecting | up | unreachable | error
  std::string error;
  MonitorState state;

  void poll_forever();
  void publish(std::shared_ptr<const Snapshot> snap, double seconds);
  void failed(const std::string& database_state, const std::string& message);

  http::Response metrics() const;
  http::Response health() const;
  http::Response ready() const;
};

void Monitor::Impl::publish(std::shared_ptr<const Snapshot> snap, double seconds) {
  auto text = snapshot_metrics(snap.get());
  std::lock_guard lock(mu);
  if (database != "up") log::info("monitor.database_up");
  if (!snapshot || snapshot->overall() != snap->overall())
    log::info("monitor.health", "status={}", to_string(snap->overall()));
  snapshot = std::move(snap);
  snapshot_text = std::move(text);
  database = "up";
  error.clear();
  state.database_up = true;
  state.snapshot_seconds = seconds;
  state.last_snapshot_timestamp =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void Monitor::Impl::failed(const std::string& database_state, const std::string& message) {
  std::lock_guard lock(mu);
  // Once per change of state: an outage of an hour is one warning, not one per retry.
  if (database != database_state || error != message)
    log::warn(database_state == "unreachable" ? "monitor.database_unreachable"
                                              : "monitor.snapshot_failed",
              "error={}", log::q(message));
  snapshot.reset();
  snapshot_text.clear();
  database = database_state;
  error = message;
  state.database_up = false;
}

// The poll loop is a heartbeat (core/notify.hpp): a snapshot stuck behind a lock stops the
// process's watchdog pings (`ingestd monitor` and `ingestd run` alike).
void Monitor::Impl::poll_forever() {
  notify::Heartbeat heartbeat("monitor.poll");
  Backoff backoff(cfg.database_retry_initial, cfg.database_retry_max);
  std::optional<pg::Connection> conn;
  RunHistory history;
  // The first snapshot leaves the all-time totals out: reading sync_status's whole history
  // once takes seconds on a year of runs, and /ready should not wait for it. The counters
  // appear from the second poll on.
  bool first = true;
  while (!stop.stop_requested()) {
    auto wait = cfg.monitor_poll_interval;
    notify::beat();
    try {
      if (!conn || !conn->healthy()) {
        conn.reset();
        conn = pg::Connection::open(
            {cfg.database_url, "ingestd-monitor", cfg.database_connect_timeout}, stop);
        conn->exec_script(kStatementTimeout);
      }
      auto t0 = std::chrono::steady_clock::now();
      auto snap = std::make_shared<const Snapshot>(take(*conn, cfg, first ? nullptr : &history));
      publish(snap, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      backoff.reset();
      first = false;
      alerter.evaluate(*snap);
    } catch (const pg::Error& e) {
      if (stop.stop_requested()) break;
      if (e.connection_lost() || !conn || !conn->healthy()) {
        conn.reset();
        failed("unreachable", e.what());
        wait = backoff.next();
      } else {
        failed("error", e.what());
      }
    } catch (const std::exception& e) {
      failed("error", e.what());
    }
    notify::wait(stop, wait);
  }
}

http::Response Monitor::Impl::metrics() const {
  std::string body;
  MonitorState st;
  {
    std::lock_guard lock(mu);
    body = snapshot_text;
    st = state;
  }
  st.alerts = alerter.counts();
  body += serialize(monitor_families(st));
  body += metrics::exposition();
  return {200, kPrometheusText, std::move(body)};
}

http::Response Monitor::Impl::health() const {
  std::shared_ptr<const Snapshot> snap;
  std::string db, err;
  {
    std::lock_guard lock(mu);
    snap = snapshot;
    db = database;
    err = error;
  }
  if (snap) return {snap->overall() == Health::healthy ? 200u : 503u, kJson, health_json(*snap)};
  return {503, kJson,
          fmt::format("{{\"status\":{},\"database\":{},\"error\":{}}}\n",
                      json_quote(db == "connecting" ? "unknown" : "failing"), json_quote(db),
                      err.empty() ? "null" : json_quote(log::redact(err)))};
}

http::Response Monitor::Impl::ready() const {
  std::lock_guard lock(mu);
  if (snapshot) return {200, "text/plain; charset=utf-8", "ready\n"};
  return {503, "text/plain; charset=utf-8", fmt::format("not ready: database {}\n", database)};
}

Monitor::Monitor(const config::Config& config) : impl_(std::make_unique<Impl>(config)) {}

Monitor::~Monitor() {
  stop();
}

void Monitor::start() {
  if (impl_->loop.joinable()) return;
  Impl* impl = impl_.get();
  notify::check_step("database.connect_timeout", impl->cfg.database_connect_timeout);
  notify::check_step("monitor snapshot (statement_timeout)", std::chrono::seconds(60));
  if (!impl->cfg.monitor_listen.empty()) {
    impl->server = std::make_unique<http::Server>(
        impl->cfg.monitor_listen,
        std::map<std::string, http::Handler>{{"/metrics", [impl] { return impl->metrics(); }},
                                             {"/health", [impl] { return impl->health(); }},
                                             {"/ready", [impl] { return impl->ready(); }}});
    log::info("monitor.listening", "listen={} port={}", impl->cfg.monitor_listen,
              impl->server->port());
  } else {
    log::warn("monitor.not_serving", "reason={}", log::q("monitor.listen is empty"));
  }
  impl->loop = std::thread([impl] { impl->poll_forever(); });
}

void Monitor::stop() {
  impl_->stop.request_stop();
  impl_->server.reset();  // closes every connection at once
  if (impl_->loop.joinable()) impl_->loop.join();
}

unsigned short Monitor::port() const {
  return impl_->server ? impl_->server->port() : 0;
}

int run(const config::Config& config, const StopToken& stop) {
  Monitor monitor(config);
  try {
    monitor.start();
  } catch (const std::runtime_error& e) {
    log::error("monitor.listen_failed", "error={}", log::q(e.what()));
    return 1;
  }
  log::info("monitor.started", "entities={} poll_interval_ms={}", config.entities.size(),
            config.monitor_poll_interval.count());
  notify::ready("monitor", "serving /metrics, /health, /ready");
  while (!stop.wait_for(std::chrono::minutes(10))) {
  }
  notify::stopping();
  monitor.stop();
  log::info("monitor.stopped");
  return 0;
}

}  // namespace ingestd::monitor
