#include "staging/stager.hpp"

#include <poll.h>
#include <sys/inotify.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <map>
#include <optional>

#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/spool.hpp"
#include "core/stop.hpp"
#include "staging/file_loader.hpp"

namespace ingestd::staging {
namespace {
using Clock = std::chrono::steady_clock;
constexpr int kFilesPerTurn = 64;

// Wakes the loop as soon as a writer renames a file into incoming/<entity>; the poll interval
// is only the fallback (e.g. a spool on a file system without inotify).
class SpoolWatch {
 public:
  SpoolWatch(const config::Config& cfg) : fd_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
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

struct EntityState {
  Backoff backoff;
  Clock::time_point next_try{};
  bool failing = false;
};

pg::ConnectOptions connect_options(const config::Config& cfg, std::string_view app) {
  return {cfg.database_url, std::string(app), cfg.database_connect_timeout};
}

std::int64_t purge_with(pg::Connection& conn, const config::Config& cfg, const StopToken& stop) {
  std::int64_t total = 0;
  auto age_seconds = std::chrono::duration_cast<std::chrono::seconds>(cfg.staging_purge_after);
  for (const auto& e : cfg.entities) {
    std::string table = pg::Identifier("stg_" + e.name).quoted();
    std::string sql = fmt::format(
        "DELETE FROM {0} WHERE id IN (SELECT id FROM {0} WHERE processed AND processed_at < "
        "now() - make_interval(secs => $1) ORDER BY processed_at LIMIT $2)",
        table);
    std::int64_t deleted = 0;
    for (;;) {
      auto r =
          conn.query(sql, static_cast<std::int64_t>(age_seconds.count()), cfg.staging_purge_batch);
      deleted += r.affected();
      if (r.affected() < cfg.staging_purge_batch || stop.stop_requested()) break;
    }
    if (deleted > 0) log::info("stager.purged", "entity={} rows={}", e.name, deleted);
    total += deleted;
  }
  return total;
}

}  // namespace

std::int64_t purge(const config::Config& config, const StopToken& stop) {
  auto conn = pg::Connection::open(connect_options(config, "ingestd-stager"), stop);
  return purge_with(conn, config, stop);
}

int run(const config::Config& cfg, const StopToken& stop, RunMode mode, Totals* totals_out) {
  Totals totals;
  SpoolWatch watch(cfg);
  Backoff db_backoff(cfg.database_retry_initial, cfg.database_retry_max);
  std::map<std::string, EntityState> state;
  for (const auto& e : cfg.entities)
    state.emplace(e.name, EntityState{Backoff(cfg.database_retry_initial, cfg.database_retry_max)});
  std::optional<pg::Connection> conn;
  auto next_purge = Clock::now() + std::chrono::seconds(10);
  bool any_failed = false;

  sd_notify(0, "READY=1\nSTATUS=staging");
  log::info("stager.started", "entities={} spool={} mode={}", cfg.entities.size(),
            log::q(cfg.spool_dir.string()), mode == RunMode::forever ? "forever" : "until_empty");

  while (!stop.stop_requested()) {
    sd_notify(0, "WATCHDOG=1");
    if (!conn) {
      try {
        conn.emplace(pg::Connection::open(connect_options(cfg, "ingestd-stager"), stop));
        if (db_backoff.attempts() > 0)
          log::info("stager.database_back", "after_attempts={}", db_backoff.attempts());
        db_backoff.reset();
      } catch (const pg::Error& e) {
        auto wait = db_backoff.next();
        log::warn("stager.database_unreachable", "attempt={} retry_in_ms={} error={}",
                  db_backoff.attempts(), wait.count(), log::q(e.what()));
        stop.wait_for(wait);
        continue;
      }
    }

    bool worked = false;
    bool waiting = false;  // files left behind (an entity backing off)
    bool db_lost = false;
    for (const auto& e : cfg.entities) {
      auto& st = state.at(e.name);
      if (Clock::now() < st.next_try) {
        waiting = true;
        continue;
      }
      FileLoader loader(*conn, cfg, e, stop);
      int files_this_pass = 0;
      for (const auto& file : spool::pending(cfg.spool_dir, e.name)) {
        if (stop.stop_requested()) break;
        // Take turns: a backlog in one entity must not hold back the others.
        if (++files_this_pass > kFilesPerTurn) {
          worked = true;
          break;
        }
        try {
          loader.load(file, totals);
          worked = true;
          if (st.failing) log::info("stager.entity_recovered", "entity={}", e.name);
          st.failing = false;
          st.backoff.reset();
        } catch (const FileLoader::Interrupted&) {
          log::info("stager.file_rolled_back", "entity={} file={} reason=shutdown", e.name,
                    file.filename().string());
          break;
        } catch (const pg::Error& err) {
          if (err.retryable()) {
            log::warn("stager.database_lost", "entity={} file={} error={}", e.name,
                      file.filename().string(), log::q(err.what()));
            db_lost = true;
            break;
          }
          auto wait = st.backoff.next();
          st.next_try = Clock::now() + wait;
          st.failing = any_failed = waiting = true;
          log::error("stager.entity_failed", "entity={} file={} retry_in_ms={} error={}", e.name,
                     file.filename().string(), wait.count(), log::q(err.what()));
          break;
        } catch (const std::exception& err) {
          auto wait = st.backoff.next();
          st.next_try = Clock::now() + wait;
          st.failing = any_failed = waiting = true;
          log::error("stager.entity_failed", "entity={} file={} retry_in_ms={} error={}", e.name,
                     file.filename().string(), wait.count(), log::q(err.what()));
          break;
        }
      }
      if (db_lost) break;
    }
    if (db_lost) {
      conn.reset();
      continue;
    }

    if (Clock::now() >= next_purge) {
      next_purge = Clock::now() + cfg.staging_purge_interval;
      try {
        totals.purged += purge_with(*conn, cfg, stop);
        for (const auto& e : cfg.entities)
          spool::prune_archive(cfg.spool_dir, e.name, cfg.spool_archive_max_age,
                               std::chrono::system_clock::now());
      } catch (const pg::Error& err) {
        log::warn("stager.purge_failed", "error={}", log::q(err.what()));
        if (err.retryable()) conn.reset();
      }
    }

    if (mode == RunMode::until_empty && !worked) {
      if (!waiting) break;
      if (any_failed) break;  // a non-database error will not fix itself within this call
    }
    if (!worked) watch.wait(stop, cfg.staging_poll_interval);
  }

  sd_notify(0, "STOPPING=1");
  log::info("stager.stopped",
            "files_loaded={} files_replayed={} files_quarantined={} run_ends={} records={} "
            "staged={} duplicates={} flagged={} purged={}",
            totals.files_loaded, totals.files_replayed, totals.files_quarantined, totals.run_ends,
            totals.records, totals.staged, totals.duplicates, totals.flagged, totals.purged);
  if (totals_out) *totals_out = totals;
  return any_failed ? 1 : 0;
}

}  // namespace ingestd::staging
