// The long-lived fetcher: one thread per entity, so an entity whose upstream keeps failing
// backs off alone; the rate limit is shared per source.
#include <thread>
#include <vector>

#include "core/backoff.hpp"
#include "core/log.hpp"
#include "core/notify.hpp"
#include "core/stop.hpp"
#include "fetcher/fetcher.hpp"

namespace ingestd::fetcher {

// Each entity loop is a heartbeat (core/notify.hpp): it beats every turn and while it waits
// for its schedule or a backoff, and a run beats per request attempt and through its own
// pauses (fetcher/run.cpp, rate_limiter.hpp). A loop stuck anywhere stops the watchdog pings.
void Fetcher::entity_loop(const config::Entity& e) {
  notify::Heartbeat heartbeat("fetcher." + e.name);
  Backoff failures(std::chrono::seconds(5),
                   std::max<std::chrono::milliseconds>(e.every, std::chrono::seconds(5)));
  while (!stop_.stop_requested()) {
    notify::beat();
    Checkpoint cp;
    try {
      cp = load_checkpoint(config_.fetcher_state_dir, e.name);
    } catch (const std::exception& err) {
      log::error("fetcher.checkpoint_unreadable", "entity={} error={}", e.name, log::q(err.what()));
      notify::wait(stop_, failures.next());
      continue;
    }
    auto now = std::chrono::system_clock::now();
    bool full_due =
        e.full_every.count() > 0 && (!cp.last_full || now - *cp.last_full >= e.full_every);
    bool due = cp.current || full_due || !cp.last_completed || now - *cp.last_completed >= e.every;
    if (!due) {
      auto until = *cp.last_completed + e.every - now;
      notify::wait(stop_, std::min(std::chrono::duration_cast<std::chrono::milliseconds>(until),
                                   std::chrono::milliseconds(60'000)));
      continue;
    }
    RunResult r;
    try {
      r = run_entity(e, std::nullopt);
    } catch (const std::exception& err) {
      // The spool or the state directory cannot be written (a full disk, permissions) or a
      // checkpoint cannot be read: the run stops where its checkpoint says, and the entity
      // backs off and tries again (fetcher.entity_backoff). Not a crash of the process.
      r.error = err.what();
      log::error("fetcher.run_interrupted", "entity={} error={} action=retry_after_backoff", e.name,
                 log::q(err.what()));
    }
    if (stop_.stop_requested()) break;
    if (r.complete) {
      failures.reset();
    } else {
      auto wait = failures.next();
      log::warn("fetcher.entity_backoff", "entity={} retry_in_ms={}", e.name, wait.count());
      notify::wait(stop_, wait);
    }
  }
}

int Fetcher::run_forever() {
  for (const auto& src : config_.sources)
    notify::check_step("sources." + src.name + ".timeout", src.timeout);
  log::info("fetcher.started", "entities={} spool={}", config_.entities.size(),
            log::q(config_.spool_dir.string()));
  {
    std::vector<std::jthread> threads;
    for (const auto& e : config_.entities) threads.emplace_back([this, &e] { entity_loop(e); });
    notify::ready("fetcher", "fetching");
    // Nothing to do here but wait: the entity loops beat for the watchdog themselves.
    while (!stop_.wait_for(std::chrono::hours(1))) {
    }
    notify::stopping();
  }
  log::info("fetcher.stopped");
  return 0;
}

}  // namespace ingestd::fetcher
