// The monitor: every monitor.poll_interval it reads one Snapshot from the database, hands it
// to the Alerter, and serves it on monitor.listen as /metrics (Prometheus), /health (JSON per
// entity) and /ready. `ingestd monitor` runs it alone; `ingestd run` embeds it next to the
// stages, whose process counters then appear on the same /metrics.
//
// A database outage never stops it: /ready and /health answer 503 ({"database":
// "unreachable"}), ingestd_monitor_database_up is 0, and it reconnects with backoff.
#pragma once

#include <memory>
#include <string>

#include "monitor/snapshot.hpp"

namespace ingestd {
class StopToken;
namespace config {
struct Config;
}
}  // namespace ingestd

namespace ingestd::monitor {

class Monitor {
 public:
  // `config` must outlive the Monitor.
  explicit Monitor(const config::Config& config);
  ~Monitor();  // stop()
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Binds monitor.listen (throws std::runtime_error naming the address when it cannot), logs
  // `monitor.listening port=N`, and starts the polling thread. Serves at once; /ready turns
  // 200 after the first snapshot.
  void start();
  // Stops polling and serving; returns within a few seconds (a snapshot in flight gets the
  // database connection's grace period). Idempotent.
  void stop();
  [[nodiscard]] unsigned short port() const;  // 0 before start()

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `ingestd monitor`: runs a Monitor until `stop`. Returns 0, or 1 when it cannot bind.
int run(const config::Config& config, const StopToken& stop);

// Views of a snapshot, shared by /health and `ingestd status`.
// /health's body: {"status": "...", "<entity>": {"last_sync", "fresh_as_of", "freshness",
// "freshness_seconds", "status", "reasons", "records_pending", "dead", "placeholders_open"}}.
[[nodiscard]] std::string health_json(const Snapshot& snapshot);
// `ingestd status --json`: every field of the snapshot.
[[nodiscard]] std::string snapshot_json(const Snapshot& snapshot);
// `ingestd status`: the table and the "Actions required:" lines, for a terminal.
[[nodiscard]] std::string status_text(const Snapshot& snapshot);

// The database-derived metric families of a snapshot (ingestd_entity_health, ...), in the
// Prometheus text format. `snapshot` nullptr (database out): none.
[[nodiscard]] std::string snapshot_metrics(const Snapshot* snapshot);

}  // namespace ingestd::monitor
