#include "core/notify.hpp"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <mutex>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "core/log.hpp"
#include "core/stop.hpp"

namespace ingestd::notify {
namespace {
using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

std::int64_t now_ns() {
  return duration_cast<nanoseconds>(Clock::now().time_since_epoch()).count();
}

std::int64_t watchdog_from_environment() {
  std::uint64_t usec = 0;
  // Checks $WATCHDOG_PID against getpid(): a child started with our environment gets none.
  if (sd_watchdog_enabled(0, &usec) <= 0) return 0;
  return static_cast<std::int64_t>(usec) * 1000;
}

std::int64_t to_ms(std::int64_t ns) {
  return ns / 1'000'000;
}

thread_local Heartbeat* current = nullptr;
}  // namespace

// The process's heartbeats and what it already told systemd.
struct Registry {
  static Registry& get() {
    static Registry r;
    return r;
  }

  const std::int64_t watchdog_ns = watchdog_from_environment();
  std::atomic<std::int64_t> last_ping_ns{0};  // 0: never

  std::mutex mu;  // guards everything below
  std::vector<Heartbeat*> loops;
  std::vector<std::string> expected;
  std::vector<std::pair<std::string, std::string>> ready;  // stage, status
  bool ready_sent = false;
  bool stopping_sent = false;
  std::set<std::string, std::less<>> warned;

  void on_beat(Heartbeat& hb) {
    auto now = now_ns();
    hb.last_beat_ns_.store(now, std::memory_order_relaxed);
    if (hb.reported_silent_.exchange(false, std::memory_order_relaxed))
      log::info("notify.loop_alive", "loop={}", hb.name_);
    auto quarter = watchdog_ns / 4;
    auto last = last_ping_ns.load(std::memory_order_relaxed);
    if (last != 0 && now - last < quarter) return;
    {
      std::lock_guard lock(mu);
      last = last_ping_ns.load(std::memory_order_relaxed);
      if (last != 0 && now - last < quarter) return;  // another loop pinged meanwhile
      for (Heartbeat* l : loops) {
        auto silent = now - l->last_beat_ns_.load(std::memory_order_relaxed);
        if (silent <= watchdog_ns / 2) continue;
        // No ping: systemd restarts the process after WatchdogSec unless this loop comes back.
        if (!l->reported_silent_.exchange(true, std::memory_order_relaxed))
          log::warn("notify.loop_silent", "loop={} silent_ms={} watchdog_ms={}", l->name_,
                    to_ms(silent), to_ms(watchdog_ns));
        return;
      }
      last_ping_ns.store(now, std::memory_order_relaxed);
    }
    sd_notify(0, "WATCHDOG=1");  // outside the lock: a slow manager never blocks other loops
  }
};

void expect(std::vector<std::string> stages) {
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  r.expected = std::move(stages);
}

void ready(std::string_view stage, std::string_view status) {
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  if (r.ready_sent) return;
  r.ready.emplace_back(stage, status);
  for (const auto& name : r.expected)
    if (std::none_of(r.ready.begin(), r.ready.end(),
                     [&](const auto& rs) { return rs.first == name; }))
      return;  // `ingestd run`: another stage is still starting
  std::string stages, statuses;
  for (const auto& [name, text] : r.ready) {
    stages += (stages.empty() ? "" : ",") + name;
    statuses += (statuses.empty() ? "" : "; ") + text;
  }
  r.ready_sent = true;
  if (sd_notify(0, fmt::format("READY=1\nSTATUS={}", statuses).c_str()) > 0)
    log::info("notify.ready", "stages={} watchdog_ms={}", stages, to_ms(r.watchdog_ns));
}

void stopping() {
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  if (std::exchange(r.stopping_sent, true)) return;
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

milliseconds slice() {
  auto w = Registry::get().watchdog_ns;
  if (w == 0) return milliseconds::max();
  return std::max(milliseconds(1), duration_cast<milliseconds>(nanoseconds(w / 4)));
}

void check_step(std::string_view what, milliseconds longest) {
  auto& r = Registry::get();
  if (r.watchdog_ns == 0 || duration_cast<nanoseconds>(longest).count() < r.watchdog_ns / 2) return;
  std::lock_guard lock(r.mu);
  if (!r.warned.emplace(what).second) return;
  log::warn("notify.watchdog_short", "step={} longest_ms={} watchdog_ms={} hint={}", what,
            longest.count(), to_ms(r.watchdog_ns),
            log::q("WatchdogSec= should be more than twice this step's limit"));
}

Heartbeat::Heartbeat(std::string name)
    : name_(std::move(name)), last_beat_ns_(now_ns()), previous_(current) {
  current = this;
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  r.loops.push_back(this);
}

Heartbeat::~Heartbeat() {
  current = previous_;
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  std::erase(r.loops, this);
}

void beat() {
  if (!current) return;
  auto& r = Registry::get();
  if (r.watchdog_ns == 0) return;
  r.on_beat(*current);
}

bool wait(const StopToken& stop, milliseconds d) {
  if (!current || Registry::get().watchdog_ns == 0) return stop.wait_for(d);
  auto deadline = Clock::now() + d;
  for (;;) {
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return stop.stop_requested();
    if (stop.wait_for(std::min(left, slice()))) return true;
    beat();
  }
}

}  // namespace ingestd::notify
