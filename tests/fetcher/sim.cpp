#include "tests/fetcher/sim.hpp"

#include <algorithm>

#include <simdjson.h>

#include "core/spool.hpp"

#ifndef INGESTD_SIM_BINARY
#error "INGESTD_SIM_BINARY must name the built upstream_sim"
#endif

namespace ingestd::test {

std::string sim_binary() {
  return INGESTD_SIM_BINARY;
}

Simulator::Simulator(const fs::path& dir, std::vector<std::string> args)
    : http_(std::chrono::seconds(10), true, never_) {
  std::vector<std::string> argv = {"--port", "0"};
  argv.insert(argv.end(), args.begin(), args.end());
  child_ = std::make_unique<Child>(sim_binary(), argv, dir / "sim.log");
  if (!child_->wait_for_log("listening 127.0.0.1:", std::chrono::seconds(10)))
    throw std::runtime_error("upstream_sim did not start: " + child_->log_text());
  std::string text = child_->log_text();
  static constexpr std::string_view kReady = "listening 127.0.0.1:";
  auto at = text.find(kReady);
  if (at == std::string::npos) throw std::runtime_error("no port in: " + text);
  port_ = std::stoi(text.substr(at + kReady.size()));
}

fetcher::HttpResponse Simulator::get(const std::string& path) {
  return http_.get(base() + path, {});
}

fetcher::HttpResponse Simulator::post(const std::string& path, const std::string& json) {
  return http_.post(base() + path, json, {"Content-Type: application/json"});
}

std::vector<std::string> Simulator::ids(const std::string& entity) {
  auto r = get("/control/ids?entity=" + entity);
  simdjson::dom::parser p;
  std::vector<std::string> out;
  for (auto id : p.parse(r.body)["ids"].get_array()) out.emplace_back(id.get_string().value());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::int64_t> Simulator::request_times() {
  auto r = get("/control/requests");
  simdjson::dom::parser p;
  std::vector<std::int64_t> out;
  for (auto req : p.parse(r.body)["requests"].get_array()) out.push_back(req["t_ms"].get_int64());
  return out;
}

std::int64_t Simulator::in_flight_max() {
  auto r = get("/control/stats");
  simdjson::dom::parser p;
  return p.parse(r.body)["requests"]["in_flight_max"].get_int64();
}

std::vector<std::string> spooled_ids(const fs::path& spool, const std::string& entity) {
  std::vector<std::string> ids;
  simdjson::ondemand::parser parser;
  std::error_code ec;
  for (const auto& f : fs::recursive_directory_iterator(spool, ec)) {
    if (!f.is_regular_file() || f.path().filename().string()[0] == '.') continue;
    if (f.path().string().find("/" + entity + "/") == std::string::npos) continue;
    // A page's body as received, kept beside the page when it was not UTF-8: not a spool
    // document (the stager quarantines it), its records are in the page itself.
    if (f.path().filename().string().find("_received") != std::string::npos) continue;
    spool::PageReader reader(parser, read_text(f.path()));
    spool::Record rec;
    while (reader.next(rec, {"id"}))
      if (rec.external_id) ids.push_back(*rec.external_id);
  }
  return ids;
}

int run_ends(const fs::path& spool, const std::string& entity) {
  int n = 0;
  std::error_code ec;
  for (const auto& f : fs::recursive_directory_iterator(spool, ec))
    if (f.is_regular_file() && f.path().string().find("/" + entity + "/") != std::string::npos &&
        f.path().filename().string().find("_end_") != std::string::npos)
      ++n;
  return n;
}

}  // namespace ingestd::test
