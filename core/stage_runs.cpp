#include "core/stage_runs.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>

#include <fmt/format.h>

#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/stop.hpp"

namespace ingestd {
namespace {

using Steady = std::chrono::steady_clock;

// A spell ends only after the entity has been idle this long: a fetch run trickling pages
// every second is one run, not one per page.
constexpr std::chrono::seconds kLinger{10};

// host:pid:start-time: unique per process life even when a container reuses its pid.
const std::string& process_prefix() {
  static const std::string prefix =
      fmt::format("{}:{}:{:x}", StageRuns::host(), ::getpid(),
                  std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
  return prefix;
}

std::int32_t clamp_int(std::int64_t v) {
  return static_cast<std::int32_t>(std::clamp<std::int64_t>(v, 0, INT32_MAX));
}

std::string json_counts(const std::map<std::string, std::int64_t>& m) {
  std::string out;
  for (const auto& [k, v] : m)
    out += fmt::format("{}{}:{}", out.empty() ? "" : ",", json_quote(k), v);
  return "{" + out + "}";
}

}  // namespace

bool StageRuns::Counts::empty() const {
  return fetched == 0 && processed == 0 && skipped == 0 && failed == 0 && perf.empty() &&
         placeholders.empty();
}

const std::string& StageRuns::host() {
  static const std::string name = [] {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return std::string("unknown");
    return std::string(buf);
  }();
  return name;
}

StageRuns::StageRuns(std::string stage, bool skipped_is_error,
                     std::map<std::string, std::chrono::milliseconds> freshness_period)
    : stage_(std::move(stage)),
      skipped_is_error_(skipped_is_error),
      period_(std::move(freshness_period)),
      id_prefix_(process_prefix()) {}

void StageRuns::work(const std::string& entity, int worker, const Counts& delta) {
  std::lock_guard lock(mu_);
  auto [it, fresh] = open_.try_emplace(entity);
  Run& run = it->second;
  if (fresh) {
    run.run_id = fmt::format("{}:{}", id_prefix_, ++seq_);
    run.started_at = std::chrono::system_clock::now();
  }
  run.busy_workers |= std::uint64_t{1} << (worker % 64);
  run.idle_since.reset();
  Counts& c = run.counts;
  c.fetched += delta.fetched;
  c.processed += delta.processed;
  c.skipped += delta.skipped;
  c.failed += delta.failed;
  for (const auto& [k, v] : delta.perf) c.perf[k] += v;
  for (const auto& [k, v] : delta.placeholders) c.placeholders[k] += v;
  run.dirty = run.dirty || fresh || !delta.empty();
}

void StageRuns::idle(const std::string& entity, int worker) {
  std::lock_guard lock(mu_);
  auto it = open_.find(entity);
  if (it == open_.end()) return;
  Run& run = it->second;
  run.busy_workers &= ~(std::uint64_t{1} << (worker % 64));
  if (run.busy_workers == 0 && !run.idle_since) run.idle_since = std::chrono::system_clock::now();
}

void StageRuns::failed(const std::string& entity, const std::string& error) {
  std::lock_guard lock(mu_);
  auto it = open_.find(entity);
  Run run;
  if (it != open_.end()) {
    run = std::move(it->second);
    open_.erase(it);
  } else {
    run.run_id = fmt::format("{}:{}", id_prefix_, ++seq_);
    run.started_at = std::chrono::system_clock::now();
  }
  run.status = "failed";
  run.error = error;
  run.completed_at = std::chrono::system_clock::now();
  closed_.push_back({entity, std::move(run)});
}

void StageRuns::flush(pg::Connection& conn) {
  std::vector<Pending> todo;
  {
    std::lock_guard lock(mu_);
    auto now = std::chrono::system_clock::now();
    for (auto it = open_.begin(); it != open_.end();) {
      Run& run = it->second;
      if (run.idle_since && now - *run.idle_since >= kLinger) {
        run.status = "success";
        run.completed_at = *run.idle_since;
        closed_.push_back({it->first, std::move(run)});
        it = open_.erase(it);
        continue;
      }
      if (run.dirty || Steady::now() - run.written >= kHeartbeat) {
        todo.push_back({it->first, run});
        run.dirty = false;
        run.written = Steady::now();
      }
      ++it;
    }
    for (auto& p : closed_) todo.push_back(std::move(p));
    closed_.clear();
  }
  for (std::size_t i = 0; i < todo.size(); ++i) {
    try {
      write(conn, todo[i].entity, todo[i].run);
    } catch (...) {
      // Unwritten closed runs go back in line; open ones are written again on the next call.
      std::lock_guard lock(mu_);
      for (std::size_t j = i; j < todo.size(); ++j) {
        if (todo[j].run.status != "running") {
          closed_.push_back(std::move(todo[j]));
        } else if (auto it = open_.find(todo[j].entity); it != open_.end()) {
          it->second.dirty = true;
        }
      }
      throw;
    }
  }
}

void StageRuns::close_all(pg::Connection& conn) {
  {
    std::lock_guard lock(mu_);
    auto now = std::chrono::system_clock::now();
    for (auto& [entity, run] : open_) {
      run.status = "success";
      run.completed_at = run.idle_since.value_or(now);
      closed_.push_back({entity, std::move(run)});
    }
    open_.clear();
  }
  flush(conn);
}

void StageRuns::close_at_exit(const pg::ConnectOptions& options) {
  {
    std::lock_guard lock(mu_);
    if (open_.empty() && closed_.empty()) return;
  }
  try {
    StopToken own;
    pg::ConnectOptions quick = options;
    quick.connect_timeout =
        std::min<std::chrono::milliseconds>(quick.connect_timeout, std::chrono::seconds(2));
    auto conn = pg::Connection::open(quick, own);
    close_all(conn);
  } catch (const std::exception& e) {
    log::warn("stage_runs.not_closed", "stage={} error={}", stage_, log::q(e.what()));
  }
}

void StageRuns::write(pg::Connection& conn, const std::string& entity, const Run& run) {
  const Counts& c = run.counts;
  std::int64_t errors = c.failed + (skipped_is_error_ ? c.skipped : 0);
  std::int64_t total = c.processed + c.skipped + c.failed;
  std::optional<double> error_rate;
  if (total > 0) error_rate = 100.0 * static_cast<double>(errors) / static_cast<double>(total);
  auto end = run.completed_at.value_or(std::chrono::system_clock::now());
  std::string perf = json_counts(c.perf);
  perf.pop_back();
  perf += fmt::format("{}\"placeholders\":{},\"seconds\":{:.3f}}}", perf.size() > 1 ? "," : "",
                      json_counts(c.placeholders),
                      std::chrono::duration<double>(end - run.started_at).count());
  std::string summary = run.error.empty() ? "{}" : "{\"error\":" + json_quote(run.error) + "}";
  // The freshness score is measured when a run closes (it reads the staging backlog).
  std::optional<double> period;
  if (auto it = period_.find(entity); it != period_.end() && run.status != "running")
    period = std::chrono::duration<double>(it->second).count();
  conn.query(
      "INSERT INTO sync_status AS s (sync_type, stage, run_id, started_at, completed_at, status, "
      "records_fetched, records_processed, records_skipped, records_failed, error_rate, "
      "data_freshness_score, error_summary, performance_metrics, host, pid, heartbeat_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, CASE WHEN $12::float8 IS NOT NULL "
      "THEN ingestd_freshness_score(extract(epoch FROM now() - ingestd_fresh_as_of($1))::float8, "
      "$12::float8) END, $13, $14, $15, $16, now())\n"
      "ON CONFLICT (stage, sync_type, run_id) DO UPDATE SET completed_at = "
      "EXCLUDED.completed_at, status = EXCLUDED.status, records_fetched = "
      "EXCLUDED.records_fetched, records_processed = EXCLUDED.records_processed, "
      "records_skipped = EXCLUDED.records_skipped, records_failed = EXCLUDED.records_failed, "
      "error_rate = EXCLUDED.error_rate, data_freshness_score = EXCLUDED.data_freshness_score, "
      "error_summary = EXCLUDED.error_summary, performance_metrics = "
      "EXCLUDED.performance_metrics, heartbeat_at = now()",
      entity, stage_, run.run_id, format_rfc3339(run.started_at),
      run.completed_at ? pg::param(format_rfc3339(*run.completed_at)) : pg::Param{}, run.status,
      clamp_int(c.fetched), clamp_int(c.processed), clamp_int(c.skipped), clamp_int(c.failed),
      error_rate ? pg::param(*error_rate) : pg::Param{}, period ? pg::param(*period) : pg::Param{},
      summary, perf, host(), static_cast<std::int64_t>(::getpid()));
}

std::int64_t StageRuns::close_abandoned(pg::Connection& conn, std::string_view stage) {
  auto rows = conn.query(
      "SELECT id, pid, run_id FROM sync_status WHERE stage = $1 AND status = 'running' AND host "
      "= $2",
      stage, host());
  std::int64_t closed = 0;
  for (int i = 0; i < rows.rows(); ++i) {
    auto pid = static_cast<pid_t>(rows.get_int(i, 1));
    std::string run_id(rows.get(i, 2));
    bool mine_now = run_id.rfind(process_prefix() + ":", 0) == 0;
    bool gone = pid == ::getpid() || (::kill(pid, 0) != 0 && errno == ESRCH);
    if (mine_now || !gone) continue;
    auto r = conn.query(
        "UPDATE sync_status SET status = 'failed', completed_at = heartbeat_at, error_summary = "
        "error_summary || jsonb_build_object('error', 'process ended without closing the run "
        "(crash or kill)') WHERE id = $1 AND status = 'running'",
        rows.get(i, 0));
    closed += r.affected();
  }
  if (closed > 0) log::warn("stage_runs.closed_abandoned", "stage={} runs={}", stage, closed);
  return closed;
}

}  // namespace ingestd
