// The long-lived fetcher: one thread per entity, so an entity whose upstream keeps failing
// backs off alone; the rate limit is shared per source.
#include <systemd/sd-daemon.h>

#include <thread>
#include <vector>

#include "core/backoff.hpp"
#include "core/log.hpp"
#include "core/stop.hpp"
#include "fetcher/fetcher.hpp"

namespace ingestd::fetcher {

void Fetcher::entity_loop(const config::Entity& e) {
  Backoff failures(std::chrono::seconds(5),
                   std::max<std::chrono::milliseconds>(e.every, std::chrono::seconds(5)));
  while (!stop_.stop_requested()) {
    Checkpoint cp;
    try {
      cp = load_checkpoint(config_.fetcher_state_dir, e.name);
    } catch (const std::exception& err) {
      log::error("fetcher.checkpoint_unreadable", "entity={} error={}", e.name, log::q(err.what()));
      stop_.wait_for(failures.next());
      continue;
    }
    auto now = std::chrono::system_clock::now();
    bool full_due =
        e.full_every.count() > 0 && (!cp.last_full || now - *cp.last_full >= e.full_every);
    bool due = cp.current || full_due || !cp.last_completed || now - *cp.last_completed >= e.every;
    if (!due) {
      auto until = *cp.last_completed + e.every - now;
      stop_.wait_for(std::min(std::chrono::duration_cast<std::chrono::milliseconds>(until),
                              std::chrono::milliseconds(60'000)));
      continue;
    }
    RunResult r;
    try {
      r = run_entity(e, std::nullopt);
    } catch (const std::exception& err) {  // spool or state directory unwritable
      r.error = err.what();
      log::error("fetcher.run_crashed", "entity={} error={}", e.name, log::q(err.what()));
    }
    if (stop_.stop_requested()) break;
    if (r.complete) {
      failures.reset();
    } else {
      auto wait = failures.next();
      log::warn("fetcher.entity_backoff", "entity={} retry_in_ms={}", e.name, wait.count());
      stop_.wait_for(wait);
    }
  }
}

int Fetcher::run_forever() {
  sd_notify(0, "READY=1\nSTATUS=fetching");
  log::info("fetcher.started", "entities={} spool={}", config_.entities.size(),
            log::q(config_.spool_dir.string()));
  {
    std::vector<std::jthread> threads;
    for (const auto& e : config_.entities) threads.emplace_back([this, &e] { entity_loop(e); });
    while (!stop_.wait_for(std::chrono::seconds(5))) sd_notify(0, "WATCHDOG=1");
  }
  sd_notify(0, "STOPPING=1");
  log::info("fetcher.stopped");
  return 0;
}

}  // namespace ingestd::fetcher
