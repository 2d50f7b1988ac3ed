// The fetcher: upstream API -> spool pages, checkpointed after every page. It knows nothing of
// the database (it links no libpq) and runs while Postgres is down.
// This header is all that main and the tests see of fetcher/.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/config.hpp"
#include "core/time.hpp"
#include "fetcher/checkpoint.hpp"

namespace ingestd {
class StopToken;
}

namespace ingestd::fetcher {

// Counted per entity now, exported as Prometheus metrics by the monitor later.
struct Metrics {
  std::atomic<std::int64_t> requests{0}, pages{0}, records{0}, retries{0}, throttled_ms{0};
  std::atomic<std::int64_t> runs_completed{0}, runs_failed{0};
  void count_status(long status) {
    std::lock_guard lock(mu);
    ++by_status[status];
  }
  std::map<long, std::int64_t> statuses() const {
    std::lock_guard lock(mu);
    return by_status;
  }

 private:
  mutable std::mutex mu;
  std::map<long, std::int64_t> by_status;
};

struct RunRequest {
  Mode mode = Mode::incremental;
  std::optional<SysTime> from, to;  // repair window
};

struct RunResult {
  bool complete = false;  // reached the end of the data (run_end marker written)
  std::string run_id;
  Mode mode = Mode::incremental;
  std::int64_t pages = 0, records = 0;
  std::string error;  // why it stopped early (empty when stopped by shutdown)
};

class Fetcher {
 public:
  Fetcher(const config::Config& config, const StopToken& stop);
  ~Fetcher();

  // One run for `entity`: an unfinished run is resumed first; then `request` (or, without
  // one, the scheduled kind: full when due, else incremental) runs to its end.
  RunResult run_entity(const config::Entity& entity, const std::optional<RunRequest>& request);
  // Long-lived: one thread per entity on its schedule; returns 0 after a stop.
  int run_forever();

  [[nodiscard]] const Metrics& metrics(const std::string& entity) const;

  struct SourceState;  // per source: rate limit and credentials (source_state.hpp)

 private:
  // `resumed`: the run was left unfinished by an earlier attempt (crash, stop, failure).
  RunResult continue_run(const config::Entity& entity, Checkpoint& cp, bool resumed);
  void entity_loop(const config::Entity& entity);

  const config::Config& config_;
  const StopToken& stop_;
  std::map<std::string, std::unique_ptr<SourceState>> sources_;
  std::map<std::string, std::unique_ptr<Metrics>> metrics_;
};

}  // namespace ingestd::fetcher
