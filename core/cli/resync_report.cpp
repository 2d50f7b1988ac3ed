#include "core/cli/resync_report.hpp"

#include <fmt/format.h>

#include "core/json_text.hpp"
#include "core/log.hpp"

namespace ingestd::cli::repair {
namespace {

std::string plural(std::int64_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

std::string time_or_null(const std::optional<SysTime>& t) {
  return t ? json_quote(format_rfc3339(*t)) : "null";
}

}  // namespace

std::vector<std::string> failures(const Report& r) {
  std::vector<std::string> out = r.errors;
  const auto& t = r.tally;
  // The three commonest reasons of a kind, each with an example id.
  auto describe = [&](std::string_view kind, std::int64_t rows, std::string_view what) {
    if (rows == 0) return;
    std::string line = fmt::format("{} {}", plural(rows, "row"), what);
    int shown = 0, more = 0;
    for (const auto& p : t.problems) {
      if (p.kind != kind) continue;
      if (shown++ == 3) {
        ++more;
        continue;
      }
      line += fmt::format("{} {} (e.g. {})", shown == 1 ? ":" : ",",
                          p.reason.empty() ? "no reason recorded" : p.reason, p.example);
    }
    if (more > 0) line += fmt::format(", and {} more", plural(more, "reason"));
    out.push_back(line);
  };
  describe("skipped", t.skipped, "skipped as invalid");
  describe("dead", t.dead,
           fmt::format("dead after {} attempts (ingestd requeue --entity {})", r.max_attempts,
                       r.entity));
  describe("retrying", t.retrying, "retrying later (in backoff)");
  describe("waiting", t.waiting, fmt::format("still waiting after {} without progress", r.timeout));
  describe("missing", t.missing, "not found in staging");
  // Said only when nothing else explains it (an incomplete fetch, pages not staged).
  if (auto n = r.fetched - r.read; n > 0 && out.empty())
    out.push_back(
        fmt::format("{} fetched but not found in the run's staged pages", plural(n, "record")));
  return out;
}

std::string render_text(const Report& r) {
  const auto& t = r.tally;
  std::string window = r.from && r.to ? fmt::format("{} {} .. {}", r.mode, format_rfc3339(*r.from),
                                                    format_rfc3339(*r.to))
                                      : r.mode;
  std::string out =
      fmt::format("resync {}: {}, run {} ({})\n", r.entity, window,
                  r.run_id.empty() ? "-" : r.run_id, r.complete ? "complete" : "incomplete");
  out += fmt::format("  fetched      {:8} records, {} pages\n", r.fetched, r.pages);
  out += fmt::format("  new          {:8} ({} filled a placeholder)\n", t.new_rows, t.filled);
  out += fmt::format("  changed      {:8}\n", t.changed);
  out += fmt::format("  unchanged    {:8}\n", t.unchanged);
  if (t.superseded > 0)
    out += fmt::format("  superseded   {:8} (production holds a newer version)\n", t.superseded);
  out += fmt::format("  placeholders {:8} (created for references of these records)\n",
                     r.placeholders);
  out += fmt::format("  failed       {:8}\n", t.failed());
  if (r.full)
    out +=
        fmt::format("  deleted      {:8} ({} undeleted; deletions {})\n", r.full->deleted,
                    r.full->undeleted, r.full->deletion.empty() ? "not applied" : r.full->deletion);
  return out;
}

std::string render_json(const Report& r, const std::vector<std::string>& failures) {
  const auto& t = r.tally;
  std::string problems, errors;
  for (const auto& p : t.problems)
    problems += fmt::format("{}{{\"kind\":{},\"rows\":{},\"reason\":{},\"example_id\":{}}}",
                            problems.empty() ? "" : ",", json_quote(p.kind), p.rows,
                            json_quote(p.reason), json_quote(p.example));
  for (const auto& f : failures) errors += (errors.empty() ? "" : ",") + json_quote(log::redact(f));
  std::string deleted = "null", undeleted = "null", deletion = "null";
  if (r.full) {
    deleted = std::to_string(r.full->deleted);
    undeleted = std::to_string(r.full->undeleted);
    if (!r.full->deletion.empty()) deletion = json_quote(r.full->deletion);
  }
  return fmt::format(
      "{{\"entity\":{},\"mode\":{},\"from\":{},\"to\":{},\"run_id\":{},\"complete\":{},"
      "\"fetched\":{},\"pages\":{},\"staged\":{{\"pages\":{},\"rows\":{},\"duplicates\":{},"
      "\"flagged\":{}}},\"new\":{},\"filled\":{},\"changed\":{},\"unchanged\":{},"
      "\"superseded\":{},\"placeholders\":{},\"failed\":{},\"skipped\":{},\"dead\":{},"
      "\"retrying\":{},\"waiting\":{},\"missing\":{},\"deleted\":{},\"undeleted\":{},"
      "\"deletion\":{},\"problems\":[{}],\"errors\":[{}],\"ok\":{}}}\n",
      json_quote(r.entity), json_quote(r.mode), time_or_null(r.from), time_or_null(r.to),
      json_quote(r.run_id), r.complete, r.fetched, r.pages, r.staged.files, r.staged.staged,
      r.staged.duplicates, r.staged.flagged, t.new_rows, t.filled, t.changed, t.unchanged,
      t.superseded, r.placeholders, t.failed(), t.skipped, t.dead, t.retrying, t.waiting, t.missing,
      deleted, undeleted, deletion, problems, errors, failures.empty());
}

}  // namespace ingestd::cli::repair
