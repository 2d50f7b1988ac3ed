// What the process tells systemd (sd_notify(3)), from one place, for one stage or for the four
// stages of `ingestd run` alike. deploy/systemd/README.md has the unit side.
//
// READY=1   once every stage of the process called ready(): one for `ingestd stager`, the
//           four named by expect() for `ingestd run`. It means "the loops are running", not
//           "the database is up" (a stage waits out an outage; the monitor's /ready says that).
// WATCHDOG=1 only while every loop that must not hang is alive. Each such loop holds a
//           Heartbeat on its own thread and beats at the top of every turn, after every
//           batch or page, and between the slices of every wait (notify::wait). A beat sends
//           WATCHDOG=1 (at most every WatchdogSec/4) only when every registered heartbeat beat
//           within the last WatchdogSec/2. So one loop stuck for longer (a deadlock, a
//           statement waiting on a lock, a request that never returns) silences the whole
//           process, and systemd kills and restarts it after WatchdogSec. No side thread
//           pings on the loops' behalf.
// STOPPING=1 once, when the first stage begins to shut down.
//
// Without $NOTIFY_SOCKET every call does nothing; without a watchdog for this process
// ($WATCHDOG_USEC, $WATCHDOG_PID unset or ours: sd_watchdog_enabled(3)) beats cost one load.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ingestd {
class StopToken;
}

namespace ingestd::notify {

// The stages that must all be ready before READY=1 (`ingestd run`). Unset: the first ready().
void expect(std::vector<std::string> stages);
// `stage` can work; `status` becomes STATUS= (the statuses of all stages, joined).
void ready(std::string_view stage, std::string_view status);
// STOPPING=1, the first time only.
void stopping();

// The longest a loop should block between two beats: WatchdogSec/4 (milliseconds::max()
// without a watchdog). A wait on something else than the stop token uses min(wait, slice()).
[[nodiscard]] std::chrono::milliseconds slice();
// Logs notify.watchdog_short (warning, once per `what`) when a single blocking step that
// cannot beat, such as a request or connect timeout, may last longer than WatchdogSec/2:
// it would get the process restarted while it legitimately waits.
void check_step(std::string_view what, std::chrono::milliseconds longest);

// One loop's liveness. Construct it on the loop's own thread, for the life of the loop: it
// registers with the process (alive from now) and becomes the thread's current heartbeat,
// which notify::beat() and notify::wait() use, so code deep inside a loop beats without
// being handed anything.
class Heartbeat {
 public:
  explicit Heartbeat(std::string name);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  friend struct Registry;
  std::string name_;
  std::atomic<std::int64_t> last_beat_ns_;
  std::atomic<bool> reported_silent_{false};
  Heartbeat* previous_;  // the thread's current heartbeat before this one
};

// The calling thread's loop is alive. No heartbeat on this thread, or no watchdog: nothing.
void beat();
// stop.wait_for(d), in slices of at most slice() with a beat after each one. True when stop
// was requested (before or during the wait), like StopToken::wait_for.
bool wait(const StopToken& stop, std::chrono::milliseconds d);

}  // namespace ingestd::notify
