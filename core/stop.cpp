#include "core/stop.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <stdexcept>

namespace ingestd {
namespace {
StopToken* signal_target = nullptr;

extern "C" void on_stop_signal(int) {
  // Only async-signal-safe work here: an atomic store and a write().
  if (signal_target) signal_target->request_stop();
}
}  // namespace

StopToken::StopToken() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ < 0) throw std::runtime_error("eventfd failed");
}

StopToken::~StopToken() {
  if (signal_target == this) signal_target = nullptr;
  ::close(fd_);
}

void StopToken::request_stop() noexcept {
  stopped_.store(true);
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
}

bool StopToken::wait_for(std::chrono::milliseconds d) const {
  if (stop_requested()) return true;
  pollfd p{fd_, POLLIN, 0};
  ::poll(&p, 1, static_cast<int>(d.count()));
  return stop_requested();
}

void stop_on_signals(StopToken& token) {
  signal_target = &token;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace ingestd
