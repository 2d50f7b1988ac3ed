// Process metrics: one prometheus-cpp registry per process, and every metric family a stage
// counts in it, declared here once so that the names the dashboards and alert rules use
// (deploy/) live in one file. The monitor's database-derived metrics are its own (monitor/).
//
// Names are ingestd_*; labels are bounded: entity (from the config), stage (fetcher, stager,
// reconciler), outcome and status (small fixed sets; HTTP statuses by class).
#pragma once

#include <string>
#include <string_view>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

namespace ingestd::metrics {

[[nodiscard]] prometheus::Registry& registry();

// The registry's families, plus ingestd_process_* (CPU, resident memory, open descriptors,
// start time, read from /proc at each call), in the Prometheus text format.
[[nodiscard]] std::string exposition();

// ingestd_records_total{stage, entity, outcome}: records leaving a stage, by outcome.
//   fetcher:    fetched
//   stager:     staged | duplicate | flagged
//   reconciler: applied | superseded | skipped | retried | dead
prometheus::Counter& records(std::string_view stage, std::string_view entity,
                             std::string_view outcome);
// ingestd_stage_runs_total{stage, entity, status}: runs this process finished (success|failed).
prometheus::Counter& stage_runs(std::string_view stage, std::string_view entity,
                                std::string_view status);
// ingestd_spool_files_total{entity, outcome}: loaded | replayed | quarantined | run_end |
// run_summary.
prometheus::Counter& spool_files(std::string_view entity, std::string_view outcome);
// ingestd_upstream_requests_total{entity, status}: 2xx | 3xx | 4xx | 429 | 5xx | error
// (no HTTP answer: timeout, connection refused, truncated).
prometheus::Counter& upstream_requests(std::string_view entity, long http_status);
// ingestd_upstream_throttled_seconds_total{entity}: time spent waiting for the rate limit
// or a Retry-After.
prometheus::Counter& upstream_throttled_seconds(std::string_view entity);
// ingestd_upstream_retries_total{entity}
prometheus::Counter& upstream_retries(std::string_view entity);
// ingestd_fetch_pages_total{entity}: pages durably spooled.
prometheus::Counter& fetch_pages(std::string_view entity);
// ingestd_placeholders_created_total{entity}: placeholder rows inserted into entity's table.
prometheus::Counter& placeholders_created(std::string_view entity);
// ingestd_batch_duration_seconds{stage}: one stager transaction or reconciler batch.
prometheus::Histogram& batch_seconds(std::string_view stage);

// The label value for an HTTP status (bounded: classes, 429 on its own, 0 = "error").
[[nodiscard]] std::string_view status_class(long http_status);

}  // namespace ingestd::metrics
