// Runs a stage's workers: worker 0 on the calling thread, each other one on its own thread.
#pragma once

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

namespace ingestd {

// Calls body(i) for i in [0, count) concurrently and returns the largest result (the exit
// code convention: 0 fine, higher is worse). Returns once every call has returned.
inline int run_parallel(int count, const std::function<int(int)>& body) {
  std::vector<int> codes(static_cast<std::size_t>(std::max(count, 1)), 0);
  {
    std::vector<std::jthread> threads;
    for (int i = 1; i < count; ++i)
      threads.emplace_back([&, i] { codes[static_cast<std::size_t>(i)] = body(i); });
    codes[0] = body(0);
  }
  return *std::max_element(codes.begin(), codes.end());
}

}  // namespace ingestd
