#include "reconciler/reconciler.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>

#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/failpoint.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/notify.hpp"
#include "core/parallel.hpp"
#include "core/pg.hpp"
#include "core/stage_runs.hpp"
#include "core/stop.hpp"
#include "reconciler/full_runs.hpp"
#include "reconciler/plan.hpp"

namespace ingestd::reconciler {
namespace {
using Clock = std::chrono::steady_clock;
// Batches of one entity per turn before the next entity gets its turn.
constexpr int kBatchesPerTurn = 16;

// "query failed: ERROR:  value too long\nDETAIL: ..." -> "value too long"
std::string primary_message(const std::string& what) {
  auto start = what.find("ERROR:");
  std::string m = start == std::string::npos ? what : what.substr(start + 6);
  m.erase(0, m.find_first_not_of(' '));
  return m.substr(0, m.find('\n'));
}

// An error one row can cause (a value Postgres refuses, a constraint, a trigger's RAISE):
// worth bisecting the batch for. Anything else (a missing table, a revoked grant, a disk full)
// would fail every row alike: the entity pauses instead, and no row is marked.
bool row_error(const pg::Error& e) {
  const auto& s = e.sqlstate();
  return s.rfind("22", 0) == 0 || s.rfind("23", 0) == 0 || s == "P0001";
}
// Lost a race with another transaction: the whole batch again, nothing counted.
bool batch_retry(const pg::Error& e) {
  return e.sqlstate() == "40001" || e.sqlstate() == "40P01";
}

// A placeholder or fuzzy-link statement failed: that is about the configuration or the parent
// table, not about the rows of the batch.
struct StepError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void add(Totals& into, const Totals& t) {
  into.batches += t.batches;
  into.applied += t.applied;
  into.applied_new += t.applied_new;
  into.applied_filled += t.applied_filled;
  into.applied_changed += t.applied_changed;
  into.applied_unchanged += t.applied_unchanged;
  into.superseded += t.superseded;
  into.skipped += t.skipped;
  into.retried += t.retried;
  into.dead += t.dead;
  into.placeholders += t.placeholders;
  into.fuzzy_links += t.fuzzy_links;
  into.deleted += t.deleted;
  into.undeleted += t.undeleted;
  into.deletions_refused += t.deletions_refused;
}

std::string seconds(std::chrono::milliseconds d) {
  return fmt::format("{}", static_cast<double>(d.count()) / 1000.0);
}

// One connection, one loop over every entity (parents first). Workers of one or many
// processes share the rows through FOR UPDATE SKIP LOCKED; nothing else coordinates them.
class Worker {
 public:
  Worker(const config::Config& cfg, const StopToken& stop, const Options& opts, int index,
         const std::vector<const Plan*>& plans, StageRuns& runs)
      : cfg_(cfg),
        stop_(stop),
        runs_(runs),
        opts_(opts),
        index_(index),
        db_backoff_(cfg.database_retry_initial, cfg.database_retry_max) {
    for (const Plan* p : plans)
      entities_.push_back({p, Backoff(cfg.database_retry_initial, cfg.database_retry_max)});
  }

  // Each worker is a heartbeat (core/notify.hpp): it beats every turn, after every batch and
  // while it waits, so a worker stuck in a statement stops the process's watchdog pings.
  int run() {
    notify::Heartbeat heartbeat(fmt::format("reconciler.worker{}", index_));
    while (!stop_.stop_requested()) {
      notify::beat();
      if (!conn_ && !connect()) continue;
      Turn turn = one_turn();
      if (!turn.db_lost && index_ == 0) turn.db_lost = !flush_runs();
      if (turn.db_lost) {
        conn_.reset();
        placeholder_conn_.reset();
        continue;
      }
      if (opts_.mode == RunMode::until_empty && !turn.worked) break;
      if (!turn.worked) idle();
    }
    if (opts_.mode == RunMode::forever) return 0;
    for (const auto& e : entities_)
      if (e.failing) return 1;
    return 0;
  }

  [[nodiscard]] const Totals& totals() const { return totals_; }

 private:
  struct EntityState {
    const Plan* plan;
    Backoff backoff;
    Clock::time_point next_try{};
    bool failing = false;
  };
  struct Turn {
    bool worked = false;
    bool db_lost = false;
  };
  struct DatabaseLost {};

  bool connect() {
    try {
      conn_.emplace(pg::Connection::open(
          {cfg_.database_url, "ingestd-reconciler", cfg_.database_connect_timeout}, stop_));
      // Times without a zone in records are read as UTC, whatever the server's setting.
      conn_->exec_script("SET TIME ZONE 'UTC'");
      conn_->exec_script(fmt::format("LISTEN {}", pg::kStagedChannel));  // see idle()
      for (const auto& e : entities_) conn_->exec_script(e.plan->create_temp);
      placeholder_conn_.emplace(pg::Connection::open(
          {cfg_.database_url, "ingestd-reconciler", cfg_.database_connect_timeout}, stop_));
      placeholder_conn_->exec_script("SET TIME ZONE 'UTC'");
      analyzed_.clear();
      if (db_backoff_.attempts() > 0)
        log::info("reconciler.database_back", "worker={} after_attempts={}", index_,
                  db_backoff_.attempts());
      db_backoff_.reset();
      return true;
    } catch (const pg::Error& e) {
      conn_.reset();
      placeholder_conn_.reset();
      auto wait = db_backoff_.next();
      log::warn("reconciler.database_unreachable", "worker={} attempt={} retry_in_ms={} error={}",
                index_, db_backoff_.attempts(), wait.count(), log::q(e.what()));
      notify::wait(stop_, wait);
      return false;
    }
  }

  // Nothing to do: wait for reconciler.poll_interval, or less when the stager says it staged
  // rows (core/pg.hpp kStagedChannel). The poll stays: rows become due by their retry time
  // too, and another stager version may not notify. A connection lost here is found by the
  // next turn.
  void idle() {
    auto deadline = Clock::now() + cfg_.reconciler_poll_interval;
    while (!stop_.stop_requested()) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      try {
        if (conn_->wait_notification(std::min(left, std::chrono::milliseconds(1000)))) return;
      } catch (const pg::Error&) {
        return;
      }
      notify::beat();  // a long poll_interval must not look like a hung worker
    }
  }

  Turn one_turn() {
    Turn turn;
    for (auto& st : entities_) {
      if (stop_.stop_requested()) break;
      if (Clock::now() < st.next_try) continue;
      const Plan& p = *st.plan;
      try {
        bool drained = false;
        for (int i = 0; i < kBatchesPerTurn && !stop_.stop_requested(); ++i) {
          auto settled = batch(p);
          notify::beat();
          if (settled == 0) {
            drained = true;
            break;
          }
          turn.worked = true;
        }
        if (drained && !stop_.stop_requested()) {
          finalize(p, turn);
          runs_.idle(p.entity->name, index_);
        }
        if (st.failing) log::info("reconciler.entity_recovered", "entity={}", p.entity->name);
        st.failing = false;
        st.backoff.reset();
      } catch (const pg::Error& err) {
        if (stop_.stop_requested()) break;  // e.g. our own cancel after the shutdown grace
        if (err.connection_lost()) {
          log::warn("reconciler.database_lost", "worker={} entity={} error={}", index_,
                    p.entity->name, log::q(err.what()));
          turn.db_lost = true;
          return turn;
        }
        entity_failed(st, err.what());
      } catch (const std::exception& err) {
        entity_failed(st, err.what());
      }
    }
    return turn;
  }

  void finalize(const Plan& p, Turn& turn) {
    try {
      auto r = finalize_full_runs(*conn_, cfg_, *p.entity);
      totals_.deleted += r.deleted;
      totals_.undeleted += r.undeleted;
      totals_.deletions_refused += r.refused;
      if (r.deleted + r.undeleted + r.refused > 0) {
        StageRuns::Counts c;
        c.perf = {
            {"deleted", r.deleted}, {"undeleted", r.undeleted}, {"deletions_refused", r.refused}};
        runs_.work(p.entity->name, index_, c);
      }
      if (r.finalized > 0) turn.worked = true;
    } catch (const pg::Error& e) {
      if (!batch_retry(e)) throw;
      log::info("reconciler.full_run_retry", "entity={} error={}", p.entity->name,
                log::q(primary_message(e.what())));
    }
  }

  // An error that is not about one row (a dropped table, a revoked grant): this entity waits,
  // the others go on.
  void entity_failed(EntityState& st, const std::string& error) {
    auto wait = st.backoff.next();
    st.next_try = Clock::now() + wait;
    st.failing = true;
    runs_.failed(st.plan->entity->name, primary_message(error));
    log::error("reconciler.entity_failed", "entity={} retry_in_ms={} error={}",
               st.plan->entity->name, wait.count(), log::q(error));
  }

  // Placeholders and links are logged once committed. A batch rolled back created nothing,
  // except the placeholders committed on their own connection (`committed`): they stay, for
  // its retry, and are logged and counted with this worker's next committed batch.
  struct Created {
    bool fuzzy;
    std::string table;
    int rows;
    std::string sample;
    bool committed = false;
  };
  void forget_uncommitted(std::size_t from) {
    created_.erase(std::remove_if(created_.begin() + static_cast<std::ptrdiff_t>(from),
                                  created_.end(), [](const Created& c) { return !c.committed; }),
                   created_.end());
  }
  void log_created(const Plan& p) {
    for (const auto& c : created_) {
      if (c.fuzzy)
        log::info("reconciler.fuzzy_linked", "entity={} table={} links={} sample={}",
                  p.entity->name, c.table, c.rows, log::q(c.sample));
      else
        log::info("reconciler.placeholders_created", "entity={} table={} created={} sample={}",
                  p.entity->name, c.table, c.rows, log::q(c.sample));
    }
    created_.clear();
  }

  // A committed batch, for sync_status and the process metrics (before log_created clears
  // the placeholders it made).
  void account(const Plan& p, const Totals& t, Clock::time_point started) {
    const std::string& entity = p.entity->name;
    StageRuns::Counts c;
    c.processed = t.applied + t.superseded;
    c.skipped = t.skipped;
    c.failed = t.dead;
    c.perf = {{"batches", 1},
              {"applied", t.applied},
              {"superseded", t.superseded},
              {"retried", t.retried},
              {"dead", t.dead}};
    if (t.fuzzy_links > 0) c.perf["fuzzy_links"] = t.fuzzy_links;
    for (const auto& made : created_) {
      if (made.fuzzy || made.rows == 0) continue;
      std::string parent = made.table;
      for (const auto& e : cfg_.entities)
        if (e.table.name == made.table) parent = e.name;
      c.placeholders[parent] += made.rows;
      metrics::placeholders_created(parent).Increment(made.rows);
    }
    runs_.work(entity, index_, c);
    for (auto [outcome, n] : {std::pair<const char*, std::int64_t>{"applied", t.applied},
                              {"superseded", t.superseded},
                              {"skipped", t.skipped},
                              {"retried", t.retried},
                              {"dead", t.dead}})
      if (n > 0) metrics::records("reconciler", entity, outcome).Increment(static_cast<double>(n));
    metrics::batch_seconds("reconciler")
        .Observe(std::chrono::duration<double>(Clock::now() - started).count());
  }

  // Worker 0 writes the process's sync_status rows between batches; false when the database
  // connection is gone.
  bool flush_runs() {
    try {
      if (!abandoned_closed_) {
        StageRuns::close_abandoned(*conn_, "reconciler");
        abandoned_closed_ = true;
      }
      runs_.flush(*conn_);
      return true;
    } catch (const pg::Error& err) {
      log::warn("reconciler.sync_status_failed", "error={}", log::q(err.what()));
      return !err.connection_lost();
    }
  }

  void rollback() noexcept {
    forget_uncommitted(0);
    try {
      if (conn_ && conn_->healthy()) conn_->exec_script("ROLLBACK");
    } catch (...) {
    }
  }

  // One transaction: claim + extract, fuzzy links and placeholders, upsert + mark. Returns the
  // number of staging rows it settled (0: nothing due).
  std::int64_t batch(const Plan& p) {
    auto started = Clock::now();
    conn_->exec_script("BEGIN");
    try {
      auto claimed = conn_->query(p.claim_extract, cfg_.reconciler_batch_size).affected();
      if (claimed == 0) {
        conn_->exec_script("COMMIT");
        return 0;
      }
      failpoint("reconciler.after_claim");
      if (claimed >= 100 && analyzed_.insert(&p).second) {
        // Once per session: with statistics on the batch table the planner marks staging rows
        // through their ctid instead of hashing a whole (small) staging table per batch.
        conn_->exec_script("ANALYZE " + p.temp_table);
      }
      Totals t;
      run_steps(p, t);
      apply(p, t);
      failpoint("reconciler.before_commit");
      conn_->exec_script("COMMIT");
      failpoint("reconciler.after_commit");
      add(totals_, t);
      account(p, t, started);
      log_created(p);
      return claimed;
    } catch (const pg::Error& e) {
      rollback();
      if (e.connection_lost() || stop_.stop_requested()) throw;
      if (batch_retry(e)) {
        log::info("reconciler.batch_retry", "entity={} error={}", p.entity->name,
                  log::q(primary_message(e.what())));
        return 1;
      }
      if (!row_error(e)) throw;  // the entity pauses (one_turn)
      log::warn("reconciler.batch_failed", "entity={} error={} action=isolate", p.entity->name,
                log::q(primary_message(e.what())));
      return isolate_batch(p);
    } catch (...) {
      rollback();
      throw;
    }
  }

  // The batch failed: claim it again by id and bisect it, each part under a savepoint, until
  // every row either applied or is settled alone as skipped, retried or dead.
  std::int64_t isolate_batch(const Plan& p) {
    auto started = Clock::now();
    conn_->exec_script("BEGIN");
    try {
      auto r = conn_->query(p.claim_ids, cfg_.reconciler_batch_size);
      std::vector<std::int64_t> ids;
      for (int i = 0; i < r.rows(); ++i) ids.push_back(r.get_int(i, 0));
      Totals t;
      if (!ids.empty()) isolate(p, ids, t);
      conn_->exec_script("COMMIT");
      add(totals_, t);
      account(p, t, started);
      log_created(p);
      return static_cast<std::int64_t>(ids.size());
    } catch (const pg::Error& e) {
      rollback();
      if (e.connection_lost() || stop_.stop_requested()) throw;
      if (batch_retry(e)) return 1;
      throw;
    } catch (...) {
      rollback();
      throw;
    }
  }

  void isolate(const Plan& p, std::span<const std::int64_t> ids, Totals& t) {
    notify::beat();  // bisecting a batch of 2000 rows is thousands of statements
    Totals part;
    auto logged = created_.size();
    conn_->exec_script("SAVEPOINT ingestd_part");
    try {
      conn_->exec_script(p.clear_temp);
      std::vector<pg::Param> list;
      for (auto id : ids) list.push_back(std::to_string(id));
      conn_->query(p.extract_ids, pg::array_literal(list));
      run_steps(p, part);
      apply(p, part);
      conn_->exec_script("RELEASE SAVEPOINT ingestd_part");
      add(t, part);
    } catch (const pg::Error& e) {
      if (e.connection_lost()) throw;
      conn_->exec_script("ROLLBACK TO SAVEPOINT ingestd_part; RELEASE SAVEPOINT ingestd_part");
      forget_uncommitted(logged);
      if (stop_.stop_requested() || !row_error(e)) throw;
      if (ids.size() == 1) {
        settle_failed_row(p, ids.front(), e, t);
        return;
      }
      auto half = ids.size() / 2;
      isolate(p, ids.first(half), t);
      isolate(p, ids.subspan(half), t);
    }
  }

  // A row that fails alone. A bad value (SQLSTATE class 22) will fail every time: skipped,
  // naming the column. A constraint or a trigger (class 23, P0001) may pass after a fix:
  // retried with backoff, dead after reconciler.max_attempts.
  void settle_failed_row(const Plan& p, std::int64_t id, const pg::Error& e, Totals& t) {
    std::string message = primary_message(e.what());
    if (e.data_error()) {
      std::string reason = diagnose(p, id).value_or("") + message;
      auto r = conn_->query(p.skip_row, id, reason);
      ++t.skipped;
      log::warn("reconciler.row_skipped", "entity={} staging_id={} external_id={} reason={}",
                p.entity->name, id, r.rows() ? log::q(r.get(0, 0)) : "", log::q(reason));
      return;
    }
    auto r = conn_->query(p.retry_row, id, message, seconds(cfg_.reconciler_retry_initial),
                          seconds(cfg_.reconciler_retry_max), cfg_.reconciler_max_attempts);
    if (r.rows() == 0) return;
    bool dead = r.get(0, 1) == "t";
    if (dead) {
      ++t.dead;
      log::error("reconciler.row_dead",
                 "entity={} staging_id={} external_id={} attempts={} error={}", p.entity->name, id,
                 log::q(r.get(0, 0)), r.get(0, 2), log::q(message));
    } else {
      ++t.retried;
      log::warn("reconciler.row_retry",
                "entity={} staging_id={} external_id={} attempts={} error={}", p.entity->name, id,
                log::q(r.get(0, 0)), r.get(0, 2), log::q(message));
    }
  }

  // Which column's value broke the cast: "occurred_at (occurredAt): ".
  std::optional<std::string> diagnose(const Plan& p, std::int64_t id) {
    auto raw = conn_->query(
        fmt::format("SELECT raw_data::text FROM {} WHERE id = $1 AND NOT processed", p.staging),
        id);
    if (raw.rows() == 0) return std::nullopt;
    std::string json(raw.get(0, 0));
    for (const auto& [what, sql] : p.diagnose) {
      conn_->exec_script("SAVEPOINT ingestd_diagnose");
      try {
        conn_->query(sql, json);
        conn_->exec_script("RELEASE SAVEPOINT ingestd_diagnose");
      } catch (const pg::Error& e) {
        if (e.connection_lost()) throw;
        conn_->exec_script(
            "ROLLBACK TO SAVEPOINT ingestd_diagnose; RELEASE SAVEPOINT ingestd_diagnose");
        return what + ": ";
      }
    }
    return std::nullopt;
  }

  void run_steps(const Plan& p, Totals& t) {
    for (const auto& step : p.steps) {
      std::vector<pg::Param> params(step.params.begin(), step.params.end());
      std::optional<pg::Result> result;
      bool committed = false;
      try {
        if (step.insert_ids.empty()) {
          result.emplace(conn_->exec(step.sql, params));
        } else {
          // Found in the batch, inserted and committed at once on the other connection.
          auto missing = conn_->query(step.missing);
          if (missing.rows() == 0) continue;
          std::vector<pg::Param> ids;
          for (int i = 0; i < missing.rows(); ++i) ids.push_back(std::string(missing.get(i, 0)));
          params.push_back(pg::array_literal(ids));
          result.emplace(placeholder_conn_->exec(step.insert_ids, params));
          committed = true;
        }
      } catch (const pg::Error& e) {
        if (e.connection_lost() || batch_retry(e) || stop_.stop_requested()) throw;
        throw StepError(fmt::format("{} for table {}: {}",
                                    step.fuzzy ? "fuzzy links" : "placeholders", step.target,
                                    primary_message(e.what())));
      }
      auto& r = *result;
      if (r.rows() == 0) continue;
      std::string sample;
      for (int i = 0; i < std::min(r.rows(), 3); ++i)
        sample += (i ? "," : "") + std::string(r.get(i, 0));
      if (step.fuzzy)
        t.fuzzy_links += r.rows();
      else
        (committed ? totals_ : t).placeholders += r.rows();
      created_.push_back({step.fuzzy, step.target, r.rows(), sample, committed});
    }
  }

  void apply(const Plan& p, Totals& t) {
    auto r = conn_->query(p.apply);
    ++t.batches;
    for (int i = 0; i < r.rows(); ++i) {
      auto outcome = r.get(i, 0);
      auto n = r.get_int(i, 1);
      if (outcome == "applied") {
        t.applied += n;
        auto as = r.get(i, 4);
        (as == "new"       ? t.applied_new
         : as == "filled"  ? t.applied_filled
         : as == "changed" ? t.applied_changed
                           : t.applied_unchanged) += n;
      }
      if (outcome == "superseded") t.superseded += n;
      if (outcome == "skipped") {
        t.skipped += n;
        log::warn("reconciler.rows_skipped", "entity={} rows={} example_id={} example_reason={}",
                  p.entity->name, n, log::q(r.get(i, 2)), log::q(r.get(i, 3)));
      }
    }
  }

  const config::Config& cfg_;
  const StopToken& stop_;
  StageRuns& runs_;
  bool abandoned_closed_ = false;
  const Options& opts_;
  int index_;
  Backoff db_backoff_;
  std::vector<EntityState> entities_;
  std::optional<pg::Connection> conn_;
  std::optional<pg::Connection> placeholder_conn_;  // autocommit: placeholders (plan.hpp)
  std::set<const Plan*> analyzed_;                  // batch tables with statistics in this session
  std::vector<Created> created_;  // this transaction's placeholders and links, for the log
  Totals totals_;
};

}  // namespace

int run(const config::Config& cfg, const StopToken& stop, const Options& opts, Totals* totals_out) {
  std::vector<std::unique_ptr<Plan>> owned;
  std::vector<const Plan*> plans;
  for (const config::Entity* e : cfg.reconciled_in_order()) {
    if (!opts.only_entity.empty() && e->name != opts.only_entity) continue;
    owned.push_back(std::make_unique<Plan>(cfg, *e));
    plans.push_back(owned.back().get());
  }
  int count = static_cast<int>(cfg.reconciler_workers);
  std::map<std::string, std::chrono::milliseconds> periods;
  for (const auto& e : cfg.entities) periods[e.name] = e.every;
  StageRuns runs("reconciler", true, periods);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < count; ++i)
    workers.push_back(std::make_unique<Worker>(cfg, stop, opts, i, plans, runs));

  notify::check_step("database.connect_timeout", cfg.database_connect_timeout);
  log::info("reconciler.started", "entities={} workers={} batch_size={} mode={}", plans.size(),
            count, cfg.reconciler_batch_size,
            opts.mode == RunMode::forever ? "forever" : "until_empty");
  if (opts.mode == RunMode::forever) notify::ready("reconciler", "reconciling");
  int code =
      run_parallel(count, [&](int i) { return workers[static_cast<std::size_t>(i)]->run(); });
  if (opts.mode == RunMode::forever) notify::stopping();
  runs.close_at_exit({cfg.database_url, "ingestd-reconciler", cfg.database_connect_timeout});
  Totals totals;
  for (const auto& w : workers) add(totals, w->totals());
  log::info("reconciler.stopped",
            "batches={} applied={} superseded={} skipped={} retried={} dead={} placeholders={} "
            "fuzzy_links={} deleted={} undeleted={} deletions_refused={}",
            totals.batches, totals.applied, totals.superseded, totals.skipped, totals.retried,
            totals.dead, totals.placeholders, totals.fuzzy_links, totals.deleted, totals.undeleted,
            totals.deletions_refused);
  if (totals_out) *totals_out = totals;
  return code;
}

std::int64_t requeue(pg::Connection& conn, const config::Entity& entity, Requeue which) {
  auto r = conn.query(
      fmt::format("UPDATE {} SET processed = false, processed_at = NULL, outcome = NULL, "
                  "processing_attempts = 0, next_attempt_at = now() WHERE processed AND "
                  "outcome = $1",
                  pg::Identifier("stg_" + entity.name).quoted()),
      which == Requeue::dead ? "dead" : "skipped");
  log::info("reconciler.requeued", "entity={} outcome={} rows={}", entity.name,
            which == Requeue::dead ? "dead" : "skipped", r.affected());
  return r.affected();
}

}  // namespace ingestd::reconciler
