// Alerts: conditions read from each Snapshot, sent as Slack-compatible JSON to
// monitor.alerts.webhook_url. One message when a condition starts, at most one more per
// monitor.alerts.min_interval while it lasts (a storm sends one message), and one recovery
// message when it clears. Sending happens on the Alerter's own thread: a dead or slow webhook
// never blocks the monitor's loop; undelivered messages are retried, then dropped with a log
// line (the condition itself stays visible on /health and /metrics).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "monitor/snapshot.hpp"

namespace ingestd::config {
struct Config;
}

namespace ingestd::monitor {

// One condition, e.g. {"timeline_entries", "dead_rows"}; kinds: run_failed (per stage),
// dead_rows, new_placeholders, stale.
struct Condition {
  std::string entity;
  std::string kind;
  std::string stage;  // run_failed only
  std::string text;   // the operator's words, with the figures
};

// The conditions a snapshot shows (pure: unit-testable without a webhook).
// `previous` is the snapshot before it (new_placeholders compares the two), or nullptr.
[[nodiscard]] std::vector<Condition> conditions(const Snapshot& now, const Snapshot* previous,
                                                const config::Config& config);

class Alerter {
 public:
  explicit Alerter(const config::Config& config);  // no webhook_url: tracks, sends nothing
  ~Alerter();  // waits at most monitor.alerts.timeout for a message in flight
  Alerter(const Alerter&) = delete;
  Alerter& operator=(const Alerter&) = delete;

  // Called by the monitor after every snapshot; returns at once.
  void evaluate(const Snapshot& snapshot);

  struct Counts {
    std::int64_t sent = 0, failed = 0, suppressed = 0, recoveries = 0;
  };
  [[nodiscard]] Counts counts() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ingestd::monitor
