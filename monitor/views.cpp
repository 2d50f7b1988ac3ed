// /health, `ingestd status` and `status --json`: three renderings of one Snapshot.
#include <cmath>

#include <fmt/format.h>

#include "core/json_text.hpp"
#include "monitor/monitor.hpp"

namespace ingestd::monitor {
namespace {

std::string json_time(const std::optional<SysTime>& t) {
  return t ? json_quote(format_rfc3339(*t)) : "null";
}

// Scores and ages are shown to 0.1: the seeds' "98.5", without float noise.
std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt::format("{}", std::round(v * 10) / 10);
}

std::string json_strings(const std::vector<std::string>& items) {
  std::string out = "[";
  for (std::size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + json_quote(items[i]);
  return out + "]";
}

// The time the entity was last read from the upstream successfully: its fetcher's newest
// successful run.
std::optional<SysTime> last_sync(const EntityState& e) {
  auto f = e.stages.find("fetcher");
  return f == e.stages.end() ? std::nullopt : f->second.last_success;
}

std::string age_since(SysTime now, const std::optional<SysTime>& t) {
  if (!t) return "never";
  return format_age(std::chrono::duration<double>(now - *t).count()) + " ago";
}

}  // namespace

std::string health_json(const Snapshot& snap) {
  std::string out = fmt::format("{{\"status\":{}", json_quote(to_string(snap.overall())));
  for (const auto& e : snap.entities) {
    out += fmt::format(
        ",{}:{{\"last_sync\":{},\"fresh_as_of\":{},\"freshness\":{},\"freshness_seconds\":{},"
        "\"status\":{},\"reasons\":{},\"records_pending\":{},\"dead\":{},"
        "\"placeholders_open\":{}}}",
        json_quote(e.entity), json_time(last_sync(e)), json_time(e.fresh_as_of),
        json_number(e.freshness_score), e.fresh_as_of ? json_number(e.freshness_seconds) : "null",
        json_quote(to_string(e.health)), json_strings(e.reasons), e.due + e.retrying, e.dead,
        e.placeholders_open);
  }
  return out + "}\n";
}

std::string snapshot_json(const Snapshot& snap) {
  std::string out = fmt::format("{{\"taken_at\":{},\"status\":{},\"entities\":{{",
                                json_time(snap.taken_at), json_quote(to_string(snap.overall())));
  for (std::size_t i = 0; i < snap.entities.size(); ++i) {
    const auto& e = snap.entities[i];
    out += fmt::format(
        "{}{}:{{\"status\":{},\"reasons\":{},\"error\":{},\"reconciled\":{},\"last_sync\":{},"
        "\"fresh_as_of\":{},\"freshness\":{},\"freshness_seconds\":{},\"due\":{},"
        "\"retrying\":{},\"dead\":{},\"oldest_due_fetched_at\":{},\"placeholders_open\":{},"
        "\"spool_waiting\":{},\"quarantined\":{},\"failures_24h\":{},",
        i ? "," : "", json_quote(e.entity), json_quote(to_string(e.health)),
        json_strings(e.reasons), e.error.empty() ? "null" : json_quote(e.error),
        e.reconciled ? "true" : "false", json_time(last_sync(e)), json_time(e.fresh_as_of),
        json_number(e.freshness_score), e.fresh_as_of ? json_number(e.freshness_seconds) : "null",
        e.due, e.retrying, e.dead, json_time(e.oldest_due_fetched_at), e.placeholders_open,
        e.spool_waiting, e.quarantined, e.failures_24h);
    if (snap.has_totals) out += fmt::format("\"placeholders_created\":{},", e.placeholders_created);
    out += "\"stages\":{";
    bool first = true;
    for (const auto& [stage, s] : e.stages) {
      out += fmt::format(
          "{}{}:{{\"last_success\":{},\"last_status\":{},\"last_run_id\":{},"
          "\"last_error\":{},\"failed_24h\":{},\"running\":{},\"stale\":{}",
          first ? "" : ",", json_quote(stage), json_time(s.last_success),
          s.last_status.empty() ? "null" : json_quote(s.last_status),
          s.last_run_id.empty() ? "null" : json_quote(s.last_run_id),
          s.last_error.empty() ? "null" : json_quote(s.last_error), s.failed_24h, s.running,
          s.stale);
      if (snap.has_totals)
        out +=
            fmt::format(",\"runs_success\":{},\"runs_failed\":{}", s.runs_success, s.runs_failed);
      out += "}";
      first = false;
    }
    out += "}}";
  }
  return out + "}}\n";
}

std::string status_text(const Snapshot& snap) {
  std::size_t width = 6;
  for (const auto& e : snap.entities) width = std::max(width, e.entity.size());
  std::string out = fmt::format("ingestd status at {}: {}\n\n", format_rfc3339(snap.taken_at),
                                to_string(snap.overall()));
  out += fmt::format("{:<{}}  {:<8}  {:<12}  {:<14}  {:>7}  {:>7}  {:>6}  {:>12}  {:>10}\n",
                     "ENTITY", width, "HEALTH", "LAST SUCCESS", "FRESHNESS", "DUE", "RETRY", "DEAD",
                     "PLACEHOLDERS", "FAILED 24H");
  for (const auto& e : snap.entities) {
    std::string freshness = e.fresh_as_of ? fmt::format("{:.0f} ({})", e.freshness_score,
                                                        format_age(e.freshness_seconds))
                                          : "0 (never)";
    auto n = [&e](std::int64_t v) { return e.reconciled ? std::to_string(v) : std::string("-"); };
    out += fmt::format("{:<{}}  {:<8}  {:<12}  {:<14}  {:>7}  {:>7}  {:>6}  {:>12}  {:>10}\n",
                       e.entity, width, to_string(e.health), age_since(snap.taken_at, last_sync(e)),
                       e.error.empty() ? freshness : "?", n(e.due), n(e.retrying), n(e.dead),
                       n(e.placeholders_open), e.failures_24h);
  }
  std::string actions, review;
  for (const auto& e : snap.entities) {
    for (const auto& r : e.reasons) actions += fmt::format("  {}: {}\n", e.entity, r);
    if (e.placeholders_open > 0)
      review += fmt::format(
          "  {}: {} placeholder{} waiting for the real record: ingestd placeholders --entity "
          "{}\n",
          e.entity, e.placeholders_open, e.placeholders_open == 1 ? "" : "s", e.entity);
  }
  out += actions.empty() ? "\nNo action required.\n" : "\nActions required:\n" + actions;
  if (!review.empty()) out += "\nTo review:\n" + review;
  return out;
}

}  // namespace ingestd::monitor
