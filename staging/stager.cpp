#include "staging/stager.hpp"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>

#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/notify.hpp"
#include "core/parallel.hpp"
#include "core/pg.hpp"
#include "core/spool.hpp"
#include "core/stage_runs.hpp"
#include "core/stop.hpp"
#include "staging/batch_loader.hpp"

namespace ingestd::staging {
namespace {
using Clock = std::chrono::steady_clock;
constexpr std::size_t kFilesPerTurn = 256;

// Wakes a worker as soon as a writer renames a file into incoming/<entity>; the poll interval
// is only the fallback (e.g. a spool on a file system without inotify).
class SpoolWatch {
 public:
  explicit SpoolWatch(const config::Config& cfg) : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    for (const auto& e : cfg.entities) {
      auto dir = spool::incoming_dir(cfg.spool_dir, e.name);
      std::filesystem::create_directories(dir);
      if (fd_ >= 0) ::inotify_add_watch(fd_, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE);
    }
  }
  ~SpoolWatch() {
    if (fd_ >= 0) ::close(fd_);
  }
  SpoolWatch(const SpoolWatch&) = delete;
  SpoolWatch& operator=(const SpoolWatch&) = delete;

  void wait(const StopToken& stop, std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{stop.fd(), POLLIN, 0}, {fd_, POLLIN, 0}};
    ::poll(fds, fd_ >= 0 ? 2 : 1, static_cast<int>(timeout.count()));
    char buf[4096];
    while (fd_ >= 0 && ::read(fd_, buf, sizeof buf) > 0) {
    }
  }

 private:
  int fd_;
};

pg::ConnectOptions connect_options(const config::Config& cfg) {
  return {cfg.database_url, "ingestd-stager", cfg.database_connect_timeout};
}

std::int64_t purge_with(pg::Connection& conn, const config::Config& cfg, const StopToken& stop) {
  std::int64_t total = 0;
  auto age_seconds = std::chrono::duration_cast<std::chrono::seconds>(cfg.staging_purge_after);
  for (const auto& e : cfg.entities) {
    std::string table = pg::Identifier("stg_" + e.name).quoted();
    std::string sql = fmt::format(
        "DELETE FROM {0} WHERE content_hash IN (SELECT content_hash FROM {0} WHERE processed "
        "AND processed_at < now() - make_interval(secs => $1) ORDER BY processed_at LIMIT $2)",
        table);
    std::int64_t deleted = 0;
    try {
      for (;;) {
        auto r = conn.query(sql, static_cast<std::int64_t>(age_seconds.count()),
                            cfg.staging_purge_batch);
        deleted += r.affected();
        if (r.affected() < cfg.staging_purge_batch || stop.stop_requested()) break;
        notify::beat();  // a month of rows is many batches
      }
    } catch (const pg::Error& err) {
      if (err.retryable()) throw;  // the connection is gone: the caller reconnects
      // One entity's table (e.g. not migrated yet) must not stop the others' purge.
      log::warn("stager.purge_failed", "entity={} error={}", e.name, log::q(err.what()));
    }
    if (deleted > 0) log::info("stager.purged", "entity={} rows={}", e.name, deleted);
    total += deleted;
  }
  return total;
}

// One of staging.workers loops. Each owns a connection and the files whose name hashes to
// its index, so two workers of one process never race for a file and Postgres gets one COPY
// stream per worker (one core each). Worker 0 also runs the purge.
class Worker {
 public:
  Worker(const config::Config& cfg, const StopToken& stop, RunMode mode, int index, int count,
         std::map<std::string, InFlight>& in_flight, std::map<std::string, KnownFilter>& known,
         StageRuns& runs)
      : cfg_(cfg),
        stop_(stop),
        runs_(runs),
        mode_(mode),
        index_(index),
        count_(count),
        watch_(cfg),
        db_backoff_(cfg.database_retry_initial, cfg.database_retry_max) {
    for (const auto& e : cfg.entities)
      entities_.emplace(e.name,
                        Entity{BatchLoader(cfg, e, stop, in_flight[e.name], known[e.name]),
                               &known[e.name], pg::Identifier("stg_" + e.name).quoted(),
                               Backoff(cfg.database_retry_initial, cfg.database_retry_max)});
  }

  // 0: stopped or drained; 1: an entity failed for a reason other than the database.
  // Each worker is a heartbeat (core/notify.hpp): it beats every turn, after every batch and
  // while it waits, so a worker stuck in a statement stops the process's watchdog pings.
  int run() {
    notify::Heartbeat heartbeat(fmt::format("stager.worker{}", index_));
    auto next_purge = Clock::now() + std::chrono::seconds(10);
    while (!stop_.stop_requested()) {
      notify::beat();
      if (index_ == 0) relieve_disk_pressure();  // database or not: the fetcher must write
      if (!conn_ && !connect()) continue;
      Pass pass = stage_pass();
      if (!pass.db_lost && index_ == 0) pass.db_lost = !flush_runs();
      if (pass.db_lost) {
        conn_.reset();
        continue;
      }
      if (index_ == 0 && Clock::now() >= next_purge) {
        next_purge = Clock::now() + cfg_.staging_purge_interval;
        purge_and_prune();
      }
      if (mode_ == RunMode::until_empty && !pass.worked && (!pass.waiting || any_failed_)) break;
      if (!pass.worked) watch_.wait(stop_, std::min(cfg_.staging_poll_interval, notify::slice()));
    }
    // Long-lived: a clean stop is success. Once: success only if nothing is left failing.
    if (mode_ == RunMode::forever) return 0;
    for (const auto& [name, st] : entities_)
      if (st.failing) return 1;
    return 0;
  }

  [[nodiscard]] const Totals& totals() const { return totals_; }

 private:
  struct Entity {
    BatchLoader loader;
    KnownFilter* known;
    std::string table;
    Backoff backoff;
    Clock::time_point next_try{};
    bool failing = false;
  };
  struct Pass {
    bool worked = false;
    bool waiting = false;  // files left behind by an entity that is backing off
    bool db_lost = false;
  };

  bool connect() {
    try {
      conn_.emplace(pg::Connection::open(connect_options(cfg_), stop_));
      if (db_backoff_.attempts() > 0)
        log::info("stager.database_back", "worker={} after_attempts={}", index_,
                  db_backoff_.attempts());
      db_backoff_.reset();
      return true;
    } catch (const pg::Error& e) {
      auto wait = db_backoff_.next();
      log::warn("stager.database_unreachable", "worker={} attempt={} retry_in_ms={} error={}",
                index_, db_backoff_.attempts(), wait.count(), log::q(e.what()));
      notify::wait(stop_, wait);
      return false;
    }
  }

  bool mine(const std::filesystem::path& file) const {
    return count_ == 1 ||
           std::hash<std::string>{}(file.filename().string()) % static_cast<std::size_t>(count_) ==
               static_cast<std::size_t>(index_);
  }

  void entity_failed(const std::string& name, Entity& st, const std::filesystem::path& file,
                     const std::string& error) {
    auto wait = st.backoff.next();
    st.next_try = Clock::now() + wait;
    st.failing = any_failed_ = true;
    runs_.failed(name, error);
    log::error("stager.entity_failed", "entity={} file={} retry_in_ms={} error={}", name,
               file.filename().string(), wait.count(), log::q(error));
  }

  Pass stage_pass() {
    Pass pass;
    for (const auto& e : cfg_.entities) {
      auto& st = entities_.at(e.name);
      if (Clock::now() < st.next_try) {
        pass.waiting = true;
        continue;
      }
      std::vector<std::filesystem::path> mine_now;
      for (auto& file : spool::pending(cfg_.spool_dir, e.name))
        if (mine(file)) mine_now.push_back(std::move(file));
      // Take turns: a backlog in one entity must not hold back the others.
      if (mine_now.empty()) runs_.idle(e.name, index_);
      if (mine_now.size() > kFilesPerTurn) {
        mine_now.resize(kFilesPerTurn);
        pass.worked = true;
      }
      std::size_t per_txn = static_cast<std::size_t>(cfg_.staging_files_per_transaction);
      for (std::size_t start = 0; start < mine_now.size(); start += per_txn) {
        if (stop_.stop_requested()) return pass;
        std::vector<std::filesystem::path> batch(
            mine_now.begin() + static_cast<std::ptrdiff_t>(start),
            mine_now.begin() +
                static_cast<std::ptrdiff_t>(std::min(mine_now.size(), start + per_txn)));
        try {
          st.known->build_once(*conn_, st.table);
          Totals before = totals_;
          auto started = Clock::now();
          st.loader.load(*conn_, batch, totals_);
          count(e.name, before, std::chrono::duration<double>(Clock::now() - started).count());
          notify::beat();
          pass.worked = true;
          if (st.failing) log::info("stager.entity_recovered", "entity={}", e.name);
          st.failing = false;
          st.backoff.reset();
        } catch (const BatchLoader::Interrupted&) {
          log::info("stager.batch_rolled_back", "entity={} files={} reason=shutdown", e.name,
                    batch.size());
          return pass;
        } catch (const pg::Error& err) {
          if (stop_.stop_requested()) {  // e.g. our own cancel after the shutdown grace
            log::info("stager.batch_rolled_back", "entity={} files={} reason=shutdown", e.name,
                      batch.size());
            return pass;
          }
          if (err.retryable()) {
            log::warn("stager.database_lost", "worker={} entity={} error={}", index_, e.name,
                      log::q(err.what()));
            pass.db_lost = true;
            return pass;
          }
          entity_failed(e.name, st, batch.front(), err.what());
          pass.waiting = true;
          break;
        } catch (const std::exception& err) {
          entity_failed(e.name, st, batch.front(), err.what());
          pass.waiting = true;
          break;
        }
      }
    }
    return pass;
  }

  // What one transaction did, for sync_status and the process metrics.
  void count(const std::string& entity, const Totals& before, double seconds) {
    Totals d;
    d.files_loaded = totals_.files_loaded - before.files_loaded;
    d.files_replayed = totals_.files_replayed - before.files_replayed;
    d.files_quarantined = totals_.files_quarantined - before.files_quarantined;
    d.run_ends = totals_.run_ends - before.run_ends;
    d.run_summaries = totals_.run_summaries - before.run_summaries;
    d.records = totals_.records - before.records;
    d.staged = totals_.staged - before.staged;
    d.duplicates = totals_.duplicates - before.duplicates;
    d.flagged = totals_.flagged - before.flagged;
    StageRuns::Counts c;
    c.fetched = d.records;
    c.processed = d.staged;
    c.skipped = d.duplicates;
    c.failed = d.flagged;
    for (auto [key, n] : {std::pair<const char*, std::int64_t>{"files", d.files_loaded},
                          {"replayed_files", d.files_replayed},
                          {"quarantined_files", d.files_quarantined},
                          {"run_ends", d.run_ends},
                          {"run_summaries", d.run_summaries}})
      if (n > 0) c.perf[key] = n;
    runs_.work(entity, index_, c);
    auto inc = [](prometheus::Counter& counter, std::int64_t n) {
      if (n > 0) counter.Increment(static_cast<double>(n));
    };
    inc(metrics::records("stager", entity, "staged"), d.staged);
    inc(metrics::records("stager", entity, "duplicate"), d.duplicates);
    inc(metrics::records("stager", entity, "flagged"), d.flagged);
    inc(metrics::spool_files(entity, "loaded"), d.files_loaded);
    inc(metrics::spool_files(entity, "replayed"), d.files_replayed);
    inc(metrics::spool_files(entity, "quarantined"), d.files_quarantined);
    inc(metrics::spool_files(entity, "run_end"), d.run_ends);
    inc(metrics::spool_files(entity, "run_summary"), d.run_summaries);
    metrics::batch_seconds("stager").Observe(seconds);
  }

  // Worker 0 writes the process's sync_status rows between transactions; false when the
  // database connection is gone.
  bool flush_runs() {
    try {
      if (!abandoned_closed_) {
        StageRuns::close_abandoned(*conn_, "stager");
        abandoned_closed_ = true;
      }
      runs_.flush(*conn_);
      return true;
    } catch (const pg::Error& err) {
      log::warn("stager.sync_status_failed", "error={}", log::q(err.what()));
      return !err.retryable();
    }
  }

  // spool.min_free: below it, archived files (a copy of what is loaded) go, oldest day first,
  // so that a full disk does not stop the fetcher. Checked every 10 s; a disk still low with
  // nothing left to remove (incoming/ itself, or another program) is logged once a minute.
  void relieve_disk_pressure() {
    if (cfg_.spool_min_free <= 0 || Clock::now() < next_space_check_) return;
    next_space_check_ = Clock::now() + std::chrono::seconds(10);
    auto free = spool::free_fraction(cfg_.spool_dir);
    if (!free || *free >= cfg_.spool_min_free) return;
    auto removed = spool::prune_archive_for_space(
        cfg_.spool_dir, cfg_.spool_min_free, [&] { return spool::free_fraction(cfg_.spool_dir); });
    auto after = spool::free_fraction(cfg_.spool_dir).value_or(0);
    if (removed == 0 && Clock::now() < next_space_warning_) return;
    next_space_warning_ = Clock::now() + std::chrono::minutes(1);
    log::warn("stager.disk_low",
              "spool={} free_percent={:.1f} min_free_percent={:.1f} archived_files_removed={} "
              "free_percent_after={:.1f}",
              log::q(cfg_.spool_dir.string()), *free * 100, cfg_.spool_min_free * 100, removed,
              after * 100);
  }

  void purge_and_prune() {
    try {
      totals_.purged += purge_with(*conn_, cfg_, stop_);
      for (const auto& e : cfg_.entities)
        spool::prune_archive(cfg_.spool_dir, e.name, cfg_.spool_archive_max_age,
                             std::chrono::system_clock::now());
    } catch (const pg::Error& err) {
      log::warn("stager.purge_failed", "error={}", log::q(err.what()));
      if (err.retryable()) conn_.reset();
    }
  }

  const config::Config& cfg_;
  const StopToken& stop_;
  StageRuns& runs_;
  bool abandoned_closed_ = false;
  Clock::time_point next_space_check_{};
  Clock::time_point next_space_warning_{};
  RunMode mode_;
  int index_;
  int count_;
  SpoolWatch watch_;
  Backoff db_backoff_;
  std::map<std::string, Entity> entities_;
  std::optional<pg::Connection> conn_;
  Totals totals_;
  bool any_failed_ = false;
};

void add(Totals& into, const Totals& t) {
  into.files_loaded += t.files_loaded;
  into.files_replayed += t.files_replayed;
  into.files_quarantined += t.files_quarantined;
  into.run_ends += t.run_ends;
  into.run_summaries += t.run_summaries;
  into.records += t.records;
  into.staged += t.staged;
  into.duplicates += t.duplicates;
  into.flagged += t.flagged;
  into.purged += t.purged;
}

}  // namespace

std::int64_t purge(const config::Config& config, const StopToken& stop) {
  auto conn = pg::Connection::open(connect_options(config), stop);
  return purge_with(conn, config, stop);
}

int run(const config::Config& cfg, const StopToken& stop, RunMode mode, Totals* totals_out) {
  int count = static_cast<int>(cfg.staging_workers);
  // Shared by the workers, per entity.
  std::map<std::string, InFlight> in_flight;
  std::map<std::string, KnownFilter> known;
  StageRuns runs("stager", false);
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < count; ++i)
    workers.push_back(std::make_unique<Worker>(cfg, stop, mode, i, count, in_flight, known, runs));

  notify::check_step("database.connect_timeout", cfg.database_connect_timeout);
  log::info("stager.started", "entities={} workers={} spool={} mode={}", cfg.entities.size(), count,
            log::q(cfg.spool_dir.string()), mode == RunMode::forever ? "forever" : "until_empty");
  if (mode == RunMode::forever) notify::ready("stager", "staging");

  int code =
      run_parallel(count, [&](int i) { return workers[static_cast<std::size_t>(i)]->run(); });

  if (mode == RunMode::forever) notify::stopping();
  runs.close_at_exit(connect_options(cfg));
  Totals totals;
  for (const auto& w : workers) add(totals, w->totals());
  log::info("stager.stopped",
            "files_loaded={} files_replayed={} files_quarantined={} run_ends={} records={} "
            "staged={} duplicates={} flagged={} purged={}",
            totals.files_loaded, totals.files_replayed, totals.files_quarantined, totals.run_ends,
            totals.records, totals.staged, totals.duplicates, totals.flagged, totals.purged);
  if (totals_out) *totals_out = totals;
  return code;
}

}  // namespace ingestd::staging
