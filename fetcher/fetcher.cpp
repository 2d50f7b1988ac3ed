#include "fetcher/fetcher.hpp"

#include <filesystem>

#include "core/stop.hpp"
#include "fetcher/source_state.hpp"

namespace ingestd::fetcher {

Fetcher::Fetcher(const config::Config& config, const StopToken& stop)
    : config_(config), stop_(stop) {
  for (const auto& s : config.sources) sources_.emplace(s.name, std::make_unique<SourceState>(s));
  for (const auto& e : config.entities) metrics_.emplace(e.name, std::make_unique<Metrics>());
  std::filesystem::create_directories(config.fetcher_state_dir);
}

Fetcher::~Fetcher() = default;

const Metrics& Fetcher::metrics(const std::string& entity) const {
  return *metrics_.at(entity);
}

}  // namespace ingestd::fetcher
