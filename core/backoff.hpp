// Capped exponential backoff with jitter: attempt n waits a random time in
// [d/2, d] where d = min(cap, initial * 2^n). The jitter keeps a fleet of workers
// that lost the same database from reconnecting in lockstep.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace ingestd {

// A seed for each Backoff: std::random_device costs tens of microseconds to open, and the
// fetcher makes one Backoff per page.
inline std::uint64_t backoff_seed() {
  static thread_local std::mt19937_64 seeds{std::random_device{}()};
  return seeds();
}

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds cap,
          std::uint64_t seed = backoff_seed())
      : initial_(initial), cap_(cap), rng_(seed) {}

  [[nodiscard]] std::chrono::milliseconds next() {
    double d = static_cast<double>(initial_.count());
    for (int i = 0; i < attempts_ && d < static_cast<double>(cap_.count()); ++i) d *= 2;
    d = std::min(d, static_cast<double>(cap_.count()));
    ++attempts_;
    std::uniform_real_distribution<double> jitter(d / 2, d);
    return std::chrono::milliseconds(static_cast<std::int64_t>(jitter(rng_)));
  }
  void reset() { attempts_ = 0; }
  [[nodiscard]] int attempts() const { return attempts_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds cap_;
  std::mt19937_64 rng_;
  int attempts_ = 0;
};

}  // namespace ingestd
