// Alerts: conditions read from each Snapshot, sent as Slack-compatible JSON to
// monitor.alerts.webhook_url. One message when a condition starts, at most one more per
// monitor.alerts.min_interval while it lasts (a storm sends one message), and one recovery
// message when it clears. Sending happens on the Alerter's own thread: a dead or slow webhook
// never blocks the monitor's loop; undelivered messages are retried, then dropped with a log
// line (the condition itself stays visible on /health and /metrics).
//
// The exact rate-limit rules are at AlertBook (and in monitor/README.md, "Alerts").
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "core/time.hpp"
#include "monitor/snapshot.hpp"

namespace ingestd::config {
struct Config;
}

namespace ingestd::monitor {

// One condition, e.g. {"timeline_entries", "dead_rows"}; kinds: run_failed (per stage; a
// 'running' row whose heartbeat stopped counts), dead_rows, new_placeholders, stale, and
// unreadable (the monitor could not read the entity's tables: no other kind is judged then). Its
// identity is (entity, kind, stage); the text may change from one snapshot to the next (a growing
// count) without making it a new condition.
struct Condition {
  std::string entity;
  std::string kind;
  std::string stage;  // run_failed only, else ""
  std::string text;   // the operator's words, with the figures
};

// The conditions a snapshot shows (pure: unit-testable without a webhook).
// `previous` is the snapshot to compare with for new_placeholders, or nullptr (then no
// new_placeholders condition: nothing is known to be new).
[[nodiscard]] std::vector<Condition> conditions(const Snapshot& now, const Snapshot* previous,
                                                const config::Config& config);

struct Message {
  enum class Type { alert, reminder, recovery };
  Type type = Type::alert;
  std::string entity, kind, stage;
  std::string text;  // one line: "[ingestd] FAILING timeline_entries: ... (host db1)"
};

// The webhook body: {"text": "..."} (Slack incoming-webhook format; Mattermost, Rocket.Chat
// and Teams' Slack-compatible endpoints accept it too).
[[nodiscard]] std::string slack_json(const Message& m);

// The rate limit, apart from the network. Per identity (entity, kind, stage):
//  1. A condition that appears is announced (type alert) unless a message for the same
//     identity went out less than min_interval ago (it is flapping): then it is suppressed,
//     and announced as an alert once min_interval has passed if it is still there.
//  2. While it lasts, one reminder per min_interval; the evaluations in between are counted
//     as suppressed and the reminder says how many.
//  3. When it clears, one recovery ("resolved after 12m") if and only if it was announced.
//     new_placeholders is an event, not a state: it has no recovery.
//  So a storm of evaluations, or a condition flapping faster than min_interval, costs at most
//  one alert and one recovery per min_interval. Times are the snapshots' taken_at; a clock
//  that steps back re-anchors the interval rather than silencing the condition.
class AlertBook {
 public:
  AlertBook(std::chrono::milliseconds min_interval, std::string host);
  // The messages due at `now`, given every condition present at `now`.
  [[nodiscard]] std::vector<Message> update(const std::vector<Condition>& present, SysTime now);
  [[nodiscard]] std::int64_t suppressed() const { return suppressed_; }

 private:
  struct State {
    bool present = false;
    bool announced = false;  // an alert went out for the current episode
    SysTime since{};         // start of the current episode
    std::optional<SysTime> last_message;
    std::int64_t quiet_checks = 0;  // evaluations suppressed since the last message
  };
  using Key = std::tuple<std::string, std::string, std::string>;  // entity, kind, stage
  std::chrono::milliseconds min_interval_;
  std::string host_;
  std::map<Key, State> states_;
  std::int64_t suppressed_ = 0;
};

struct AlertCounts {
  std::int64_t alerts = 0;      // condition announced (includes re-announcements)
  std::int64_t reminders = 0;   // "still failing"
  std::int64_t recoveries = 0;  // "resolved"
  std::int64_t suppressed = 0;  // evaluations where a present condition sent nothing
  std::int64_t sent = 0;        // messages the webhook accepted (2xx)
  std::int64_t failed = 0;      // messages given up after retries
  std::int64_t dropped = 0;     // messages discarded: queue full, or still queued at exit
};

class Alerter {
 public:
  explicit Alerter(const config::Config& config);  // no webhook_url: tracks, sends nothing
  ~Alerter();  // waits at most monitor.alerts.timeout for the messages still queued
  Alerter(const Alerter&) = delete;
  Alerter& operator=(const Alerter&) = delete;

  // Called by the monitor after every snapshot; returns at once (never waits on the network).
  // The snapshot's taken_at is the alerts' clock.
  void evaluate(const Snapshot& snapshot);

  using Counts = AlertCounts;
  [[nodiscard]] Counts counts() const;

  static constexpr std::size_t kQueueLimit = 64;  // messages waiting for the webhook
  static constexpr int kAttempts = 3;             // POSTs per message

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ingestd::monitor
