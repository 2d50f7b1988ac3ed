// Token bucket shared by all entities of one source: `per_second` tokens a second, at most
// `burst` saved up. A Retry-After from the server closes the bucket for everyone until then.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <mutex>

#include "core/notify.hpp"
#include "core/stop.hpp"

namespace ingestd::fetcher {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  RateLimiter(double per_second, std::int64_t burst)
      : per_second_(per_second), burst_(static_cast<double>(burst)), tokens_(burst_) {}

  // Waits for a token; returns how long it waited. False in `ok` when stopped meanwhile.
  std::chrono::milliseconds acquire(const StopToken& stop, bool& ok) {
    auto start = Clock::now();
    ok = true;
    for (;;) {
      std::chrono::milliseconds wait{0};
      {
        std::lock_guard lock(mu_);
        auto now = Clock::now();
        if (now < closed_until_) {
          wait = std::chrono::ceil<std::chrono::milliseconds>(closed_until_ - now);
        } else if (per_second_ <= 0) {
          break;
        } else {
          refill(now);
          if (tokens_ >= 1) {
            tokens_ -= 1;
            break;
          }
          wait = std::chrono::milliseconds(
              static_cast<long>(std::ceil((1 - tokens_) / per_second_ * 1000)));
        }
      }
      // Beats through a Retry-After of up to an hour (core/notify.hpp).
      if (notify::wait(stop, std::max(wait, std::chrono::milliseconds(1)))) {
        ok = false;
        break;
      }
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  }

  // Takes a token if one is there now (and no Retry-After pause is running); never waits.
  bool try_acquire() {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    if (now < closed_until_) return false;
    if (per_second_ <= 0) return true;
    refill(now);
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

  // The server asked for a pause (Retry-After): nobody sends before `until`.
  void close_until(Clock::time_point until) {
    std::lock_guard lock(mu_);
    closed_until_ = std::max(closed_until_, until);
  }

 private:
  void refill(Clock::time_point now) {
    if (last_ != Clock::time_point{}) {
      double secs = std::chrono::duration<double>(now - last_).count();
      tokens_ = std::min(burst_, tokens_ + secs * per_second_);
    }
    last_ = now;
  }

  std::mutex mu_;
  double per_second_;
  double burst_;
  double tokens_;
  Clock::time_point last_{};
  Clock::time_point closed_until_{};
};

}  // namespace ingestd::fetcher
