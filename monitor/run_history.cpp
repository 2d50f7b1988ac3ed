#include "monitor/run_history.hpp"

#include <cstdlib>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "core/metrics.hpp"
#include "core/pg.hpp"

namespace ingestd::monitor {

RunTotals& RunTotals::operator+=(const RunTotals& o) {
  runs_success += o.runs_success;
  runs_failed += o.runs_failed;
  records_fetched += o.records_fetched;
  records_processed += o.records_processed;
  records_skipped += o.records_skipped;
  records_failed += o.records_failed;
  for (std::size_t b = 0; b < duration_le.size(); ++b) duration_le[b] += o.duration_le[b];
  duration_count += o.duration_count;
  duration_sum_seconds += o.duration_sum_seconds;
  return *this;
}

namespace {

struct EntityTotals {
  std::map<std::string, RunTotals> stages;
  std::map<std::string, std::int64_t> upstream;  // by status class
  double throttled = 0;
  std::int64_t placeholders = 0;  // created in this entity's table

  void add(const EntityTotals& o) {
    for (const auto& [stage, t] : o.stages) stages[stage] += t;
    for (const auto& [cls, n] : o.upstream) upstream[cls] += n;
    throttled += o.throttled;
    placeholders += o.placeholders;
  }
};
using Totals = std::map<std::string, EntityTotals>;  // by entity

void add(Totals& into, const Totals& from) {
  for (const auto& [entity, t] : from) into[entity].add(t);
}

// Every query takes the entities ($1) and a started_at range [$2, $3) in epoch seconds
// ("-Infinity" / "Infinity" for none); with the stages spelled out, all three columns of the
// (sync_type, stage, started_at) index bound the scan.
constexpr const char* kRange =
    "sync_type = ANY($1::text[]) AND started_at >= to_timestamp($2::float8)"
    " AND started_at < to_timestamp($3::float8)";

// One row per entity, stage, status and duration bucket k: the number of kRunDurationBuckets
// bounds below the run's duration, so the run counts in bucket k and every wider one (NULL:
// not finished). width_bucket() over the negated bounds counts the bounds >= d.
std::string runs_sql() {
  std::string negated;
  for (auto it = kRunDurationBuckets.rbegin(); it != kRunDurationBuckets.rend(); ++it)
    negated += fmt::format("{}{}", negated.empty() ? "" : ",", -*it);
  return fmt::format(R"(
SELECT sync_type, stage, status, {0} - width_bucket(-d, ARRAY[{1}]::float8[]) AS k, count(*),
       sum(records_fetched), sum(records_processed), sum(records_skipped), sum(records_failed),
       sum(d)
  FROM (SELECT sync_type, stage, status, records_fetched, records_processed, records_skipped,
               records_failed,
               CASE WHEN status <> 'running' AND completed_at IS NOT NULL
                    THEN greatest(0, date_part('epoch', completed_at - started_at))
               END AS d
          FROM sync_status
         WHERE stage = ANY(ARRAY['fetcher', 'stager', 'reconciler']) AND {2}) AS r
 GROUP BY 1, 2, 3, 4)",
                     kRunDurationBuckets.size(), negated, kRange);
}

// The fetcher's figures that live in JSON. jsonb_each() of a field that may be missing or not
// an object; a run without statuses still counts its throttled seconds (key NULL).
std::string fetcher_sql() {
  return fmt::format(R"(
SELECT sync_type, s.key, sum(s.value::numeric)::bigint,
       sum(CASE WHEN s.key IS NULL
                 AND jsonb_typeof(r.performance_metrics->'throttled_seconds') = 'number'
                THEN (r.performance_metrics->>'throttled_seconds')::float8 END)
  FROM sync_status AS r
  LEFT JOIN LATERAL (
       SELECT key, value FROM jsonb_each(
              CASE WHEN jsonb_typeof(r.error_summary->'statuses') = 'object'
                   THEN r.error_summary->'statuses' ELSE '{{}}' END)
        WHERE jsonb_typeof(value) = 'number'
        UNION ALL SELECT NULL, NULL) AS s ON true
 WHERE stage = 'fetcher' AND {}
 GROUP BY 1, 2)",
                     kRange);
}

// Counted by the referencing entity's run, keyed by the referenced entity.
std::string placeholders_sql() {
  return fmt::format(R"(
SELECT p.key, sum(p.value::numeric)::bigint
  FROM sync_status AS r,
       jsonb_each(CASE WHEN jsonb_typeof(r.performance_metrics->'placeholders') = 'object'
                       THEN r.performance_metrics->'placeholders' ELSE '{{}}' END) AS p
 WHERE stage = 'reconciler' AND {} AND p.key = ANY($1::text[])
   AND jsonb_typeof(p.value) = 'number'
 GROUP BY 1)",
                     kRange);
}

std::int64_t integer(const pg::Result& r, int row, int col) {
  return r.is_null(row, col) ? 0 : r.get_int(row, col);
}

double number(const pg::Result& r, int row, int col) {
  return r.is_null(row, col) ? 0 : std::strtod(std::string(r.get(row, col)).c_str(), nullptr);
}

std::string bound(std::optional<std::int64_t> epoch, const char* none) {
  return epoch ? std::to_string(*epoch) : none;
}

Totals read(pg::Connection& conn, const std::string& names, std::optional<std::int64_t> from,
            std::optional<std::int64_t> to) {
  const auto lo = bound(from, "-Infinity");
  const auto hi = bound(to, "Infinity");
  Totals out;
  auto runs = conn.query(runs_sql(), names, lo, hi);
  for (int i = 0; i < runs.rows(); ++i) {
    auto& t = out[std::string(runs.get(i, 0))].stages[std::string(runs.get(i, 1))];
    const std::string_view status = runs.get(i, 2);
    const auto n = integer(runs, i, 4);
    if (status == "success") t.runs_success += n;
    if (status == "failed") t.runs_failed += n;
    t.records_fetched += integer(runs, i, 5);
    t.records_processed += integer(runs, i, 6);
    t.records_skipped += integer(runs, i, 7);
    t.records_failed += integer(runs, i, 8);
    if (runs.is_null(i, 3)) continue;  // not finished: no duration
    t.duration_count += n;
    t.duration_sum_seconds += number(runs, i, 9);
    for (auto b = static_cast<std::size_t>(integer(runs, i, 3)); b < t.duration_le.size(); ++b)
      t.duration_le[b] += n;
  }
  auto fetcher = conn.query(fetcher_sql(), names, lo, hi);
  for (int i = 0; i < fetcher.rows(); ++i) {
    auto& e = out[std::string(fetcher.get(i, 0))];
    if (fetcher.is_null(i, 1)) {
      e.throttled += number(fetcher, i, 3);
      continue;
    }
    std::string key(fetcher.get(i, 1));
    char* end = nullptr;
    long code = std::strtol(key.c_str(), &end, 10);
    auto cls = !key.empty() && *end == '\0' ? metrics::status_class(code) : "error";
    e.upstream[std::string(cls)] += integer(fetcher, i, 2);
  }
  auto created = conn.query(placeholders_sql(), names, lo, hi);
  for (int i = 0; i < created.rows(); ++i)
    out[std::string(created.get(i, 0))].placeholders = integer(created, i, 1);
  return out;
}

}  // namespace

struct RunHistory::Impl {
  Totals settled;                       // rows that started before the horizon
  std::optional<std::int64_t> horizon;  // epoch seconds; nullopt: nothing read yet
};

RunHistory::RunHistory() : impl_(std::make_unique<Impl>()) {}
RunHistory::~RunHistory() = default;

void read_totals(pg::Connection& conn, const std::string& names, RunHistory& history,
                 Snapshot& snap) {
  auto& h = history.impl();
  // Whole hours, so the bound is exact in float8 and moves at most once an hour.
  auto horizon_row =
      conn.query("SELECT extract(epoch FROM date_trunc('hour', now() - $1::interval))::bigint",
                 fmt::format("{} hours", RunHistory::kSettleAfter.count()));
  const std::int64_t horizon = horizon_row.get_int(0, 0);
  if (!h.horizon || horizon > *h.horizon) {
    add(h.settled, read(conn, names, h.horizon, horizon));
    h.horizon = horizon;
  }
  Totals all = h.settled;
  add(all, read(conn, names, h.horizon, std::nullopt));
  for (auto& e : snap.entities) {
    auto it = all.find(e.entity);
    if (it == all.end()) continue;
    for (auto& [stage, s] : e.stages)
      if (auto t = it->second.stages.find(stage); t != it->second.stages.end())
        static_cast<RunTotals&>(s) = t->second;
    e.upstream_requests = it->second.upstream;
    e.throttled_seconds = it->second.throttled;
    e.placeholders_created = it->second.placeholders;
  }
  snap.has_totals = true;
}

}  // namespace ingestd::monitor
