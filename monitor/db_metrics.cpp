#include "monitor/db_metrics.hpp"

#include <chrono>
#include <limits>
#include <sstream>

#include <prometheus/text_serializer.h>

#include "monitor/monitor.hpp"

namespace ingestd::monitor {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

class Family {
 public:
  Family(std::string name, std::string help, MetricType type) {
    f_.name = std::move(name);
    f_.help = std::move(help);
    f_.type = type;
  }
  void add(Labels labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f_.type == MetricType::Counter)
      m.counter.value = value;
    else
      m.gauge.value = value;
    f_.metric.push_back(std::move(m));
  }
  void add_histogram(Labels labels, const StageState& s) {
    ClientMetric m;
    m.label = std::move(labels);
    m.histogram.sample_count = static_cast<std::uint64_t>(s.duration_count);
    m.histogram.sample_sum = s.duration_sum_seconds;
    for (std::size_t b = 0; b < kRunDurationBuckets.size(); ++b)
      m.histogram.bucket.push_back(
          {static_cast<std::uint64_t>(s.duration_le[b]), kRunDurationBuckets[b]});
    m.histogram.bucket.push_back(
        {static_cast<std::uint64_t>(s.duration_count), std::numeric_limits<double>::infinity()});
    f_.metric.push_back(std::move(m));
  }
  // An empty family is left out: promtool and Prometheus expect samples after a TYPE line.
  void into(std::vector<MetricFamily>& out) {
    if (!f_.metric.empty()) out.push_back(std::move(f_));
  }

 private:
  MetricFamily f_;
};

double seconds_since_epoch(SysTime t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

}  // namespace

std::vector<MetricFamily> snapshot_families(const Snapshot& snap) {
  const auto G = MetricType::Gauge;
  const auto C = MetricType::Counter;
  Family health("ingestd_entity_health",
                "Entity health: 0 healthy, 1 degraded, 2 failing (rules in monitor/README.md)", G);
  Family fresh_s("ingestd_freshness_seconds",
                 "Age of the newest fetch run that is all the way through the pipeline", G);
  Family fresh_score("ingestd_freshness_score",
                     "Data freshness 0-100: 100 within two schedule periods, 0 never synced", G);
  Family last_success("ingestd_last_success_timestamp_seconds",
                      "Completion time of the newest successful run, per stage", G);
  Family runs("ingestd_runs_total", "Finished runs recorded in sync_status, by status", C);
  Family running("ingestd_runs_running", "Runs recorded as running in sync_status", G);
  Family last_failed("ingestd_last_run_failed",
                     "1 when the stage's newest run in sync_status failed, else 0", G);
  Family stale("ingestd_runs_stale",
               "Running runs whose heartbeat is older than 5 minutes (writer gone)", G);
  Family duration("ingestd_run_duration_seconds",
                  "Duration of finished runs recorded in sync_status", MetricType::Histogram);
  Family records("ingestd_run_records_total",
                 "Records counted by the runs in sync_status, by outcome "
                 "(fetched, processed, skipped, failed)",
                 C);
  Family requests("ingestd_run_upstream_requests_total",
                  "Upstream requests of the fetcher's runs in sync_status, by status class", C);
  Family throttled("ingestd_run_upstream_throttled_seconds_total",
                   "Seconds the fetcher's runs waited for the rate limit or a Retry-After", C);
  Family created("ingestd_run_placeholders_total",
                 "Placeholder rows the reconciler's runs created in this entity's table", C);
  Family backlog("ingestd_staging_backlog",
                 "Staging rows by state: due, retrying (in backoff), dead", G);
  Family open("ingestd_placeholders_open", "Placeholder rows still waiting for their record", G);
  Family spool("ingestd_spool_files_waiting", "Spool files in incoming/ not yet staged", G);
  Family quarantined("ingestd_quarantined_files", "Quarantined spool files not yet resolved", G);

  for (const auto& e : snap.entities) {
    const Labels el = {{"entity", e.entity}};
    health.add(el, static_cast<double>(e.health));
    for (const auto& [stage, s] : e.stages) {
      Labels esl = {{"entity", e.entity}, {"stage", stage}};
      if (s.last_success) last_success.add(esl, seconds_since_epoch(*s.last_success));
      running.add(esl, static_cast<double>(s.running));
      last_failed.add(esl, s.last_status == "failed" ? 1 : 0);
      stale.add(esl, static_cast<double>(s.stale));
      if (!snap.has_totals) continue;
      runs.add({{"entity", e.entity}, {"stage", stage}, {"status", "success"}},
               static_cast<double>(s.runs_success));
      runs.add({{"entity", e.entity}, {"stage", stage}, {"status", "failed"}},
               static_cast<double>(s.runs_failed));
      duration.add_histogram(esl, s);
      const std::pair<const char*, std::int64_t> outcomes[] = {{"fetched", s.records_fetched},
                                                               {"processed", s.records_processed},
                                                               {"skipped", s.records_skipped},
                                                               {"failed", s.records_failed}};
      for (const auto& [outcome, n] : outcomes)
        records.add({{"entity", e.entity}, {"stage", stage}, {"outcome", outcome}},
                    static_cast<double>(n));
    }
    if (snap.has_totals) {
      for (const auto& [cls, n] : e.upstream_requests)
        requests.add({{"entity", e.entity}, {"status", cls}}, static_cast<double>(n));
      throttled.add(el, e.throttled_seconds);
      if (e.reconciled) created.add(el, static_cast<double>(e.placeholders_created));
    }
    spool.add(el, static_cast<double>(e.spool_waiting));
    quarantined.add(el, static_cast<double>(e.quarantined));
    if (!e.error.empty()) continue;  // its tables could not be read: no values to report
    fresh_score.add(el, e.freshness_score);
    if (e.fresh_as_of) fresh_s.add(el, e.freshness_seconds);
    if (!e.reconciled) continue;
    open.add(el, static_cast<double>(e.placeholders_open));
    backlog.add({{"entity", e.entity}, {"state", "due"}}, static_cast<double>(e.due));
    backlog.add({{"entity", e.entity}, {"state", "retrying"}}, static_cast<double>(e.retrying));
    backlog.add({{"entity", e.entity}, {"state", "dead"}}, static_cast<double>(e.dead));
  }

  std::vector<MetricFamily> out;
  for (Family* f : {&health, &fresh_s, &fresh_score, &last_success, &runs, &running, &last_failed,
                    &stale, &duration, &records, &requests, &throttled, &created, &backlog, &open,
                    &spool, &quarantined})
    f->into(out);
  return out;
}

std::vector<MetricFamily> monitor_families(const MonitorState& st) {
  Family up("ingestd_monitor_database_up",
            "1 when the monitor's last snapshot read the database, else 0", MetricType::Gauge);
  up.add({}, st.database_up ? 1 : 0);
  Family seconds("ingestd_monitor_snapshot_seconds", "How long the last snapshot took",
                 MetricType::Gauge);
  seconds.add({}, st.snapshot_seconds);
  Family last("ingestd_monitor_last_snapshot_timestamp_seconds",
              "When the monitor last read a snapshot successfully", MetricType::Gauge);
  if (st.last_snapshot_timestamp > 0) last.add({}, st.last_snapshot_timestamp);
  Family alerts("ingestd_alerts_total",
                "Alert messages by result: sent, failed (undelivered), suppressed (rate "
                "limit), recovery, dropped (queue full or shutdown)",
                MetricType::Counter);
  alerts.add({{"result", "sent"}}, static_cast<double>(st.alerts.sent));
  alerts.add({{"result", "failed"}}, static_cast<double>(st.alerts.failed));
  alerts.add({{"result", "suppressed"}}, static_cast<double>(st.alerts.suppressed));
  alerts.add({{"result", "recovery"}}, static_cast<double>(st.alerts.recoveries));
  alerts.add({{"result", "dropped"}}, static_cast<double>(st.alerts.dropped));
  std::vector<MetricFamily> out;
  for (Family* f : {&up, &seconds, &last, &alerts}) f->into(out);
  return out;
}

std::string serialize(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

std::string snapshot_metrics(const Snapshot* snapshot) {
  return snapshot ? serialize(snapshot_families(*snapshot)) : std::string();
}

}  // namespace ingestd::monitor
