// Cooperative shutdown. SIGTERM/SIGINT set the flag and make fd() readable, so a stage can
// wait on its own work (a socket, inotify) and on shutdown with a single poll().
#pragma once

#include <atomic>
#include <chrono>

namespace ingestd {

class StopToken {
 public:
  StopToken();
  ~StopToken();
  StopToken(const StopToken&) = delete;
  StopToken& operator=(const StopToken&) = delete;

  void request_stop() noexcept;
  [[nodiscard]] bool stop_requested() const noexcept { return stopped_.load(); }
  // Sleeps up to `d`; returns true when stop was requested (early or already).
  bool wait_for(std::chrono::milliseconds d) const;
  // Readable once stop was requested; stays readable.
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  std::atomic<bool> stopped_{false};
  int fd_ = -1;
};

// Routes SIGTERM and SIGINT to `token` for the life of the process.
void stop_on_signals(StopToken& token);

}  // namespace ingestd
