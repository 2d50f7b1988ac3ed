// The upstream simulator as a real child process on 127.0.0.1, for the fetcher tests.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/stop.hpp"
#include "fetcher/http.hpp"
#include "tests/support/support.hpp"

namespace ingestd::test {

class Simulator {
 public:
  Simulator(const fs::path& dir, std::vector<std::string> args = {});
  [[nodiscard]] std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] std::string graphql() const { return base() + "/graphql"; }
  fetcher::HttpResponse get(const std::string& path);
  fetcher::HttpResponse post(const std::string& path, const std::string& json);
  // Ids of `entity` as the simulator holds them now, sorted.
  std::vector<std::string> ids(const std::string& entity);
  void fault(const std::string& json) { post("/control/faults", json); }
  void reset() { post("/control/reset", "{}"); }
  // Milliseconds (since the simulator started) of every data request, in order.
  std::vector<std::int64_t> request_times();
  // The most data requests the simulator held at once (read, not yet answered).
  std::int64_t in_flight_max();

 private:
  StopToken never_;
  std::unique_ptr<Child> child_;
  int port_ = 0;
  fetcher::HttpClient http_;
};

std::string sim_binary();

// Every record id in the spool pages of `entity` (incoming/ and archive/), with repeats.
std::vector<std::string> spooled_ids(const fs::path& spool, const std::string& entity);
// The number of run_end markers for `entity` in the spool.
int run_ends(const fs::path& spool, const std::string& entity);

}  // namespace ingestd::test
