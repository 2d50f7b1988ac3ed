// The monitor's metric families, built fresh from each Snapshot rather than kept in
// prometheus-cpp counters: the database is the source of truth, so a restarted monitor
// reports the same totals, and two monitors agree. Internal to monitor/.
//
// Names differ from core/metrics.hpp's (the stages' process counters), because in `ingestd
// run` both appear on one /metrics.
#pragma once

#include <string>
#include <vector>

#include <prometheus/metric_family.h>

#include "monitor/alerts.hpp"
#include "monitor/snapshot.hpp"

namespace ingestd::monitor {

[[nodiscard]] std::vector<prometheus::MetricFamily> snapshot_families(const Snapshot& snapshot);

// The monitor's own state: ingestd_monitor_database_up, ingestd_monitor_snapshot_seconds,
// ingestd_monitor_last_snapshot_timestamp_seconds (omitted before the first success),
// ingestd_alerts_total{result}.
struct MonitorState {
  bool database_up = false;
  double snapshot_seconds = 0;
  double last_snapshot_timestamp = 0;  // 0: never
  Alerter::Counts alerts;
};
[[nodiscard]] std::vector<prometheus::MetricFamily> monitor_families(const MonitorState& state);

[[nodiscard]] std::string serialize(const std::vector<prometheus::MetricFamily>& families);

}  // namespace ingestd::monitor
