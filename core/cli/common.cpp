#include "core/cli/common.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <fmt/format.h>

#include "core/http_server.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/stop.hpp"

namespace ingestd::cli {
namespace {
constexpr const char* kDefaultConfig = "/etc/ingestd/ingestd.yaml";
}  // namespace

std::string default_config_path() {
  const char* env = std::getenv("INGESTD_CONFIG");
  return env ? env : kDefaultConfig;
}

std::optional<po::variables_map> parse(const Args& args, std::string_view command,
                                       po::options_description extra, int* code) {
  po::options_description opts(fmt::format("ingestd {} options", command));
  opts.add_options()("help,h", "show this help")(
      "config,c", po::value<std::string>()->default_value(default_config_path()),
      "configuration file (default from $INGESTD_CONFIG)");
  opts.add(extra);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(args).options(opts).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "ingestd %.*s: %s\n", static_cast<int>(command.size()), command.data(),
                 e.what());
    *code = 2;
    return std::nullopt;
  }
  if (vm.count("help")) {
    std::cout << opts << "\n";
    *code = 0;
    return std::nullopt;
  }
  return vm;
}

std::optional<config::Config> load_config(const po::variables_map& vm) {
  auto path = vm["config"].as<std::string>();
  auto result = config::load_file(path);
  if (!result.config) {
    for (const auto& e : result.errors) std::fprintf(stderr, "%s\n", log::redact(e).c_str());
    std::fprintf(stderr, "%zu error(s) in %s\n", result.errors.size(), path.c_str());
    return std::nullopt;
  }
  log::init(result.config->log_level);
  return result.config;
}

int crash_guarded(std::string_view stage, const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    log::error(fmt::format("{}.crashed", stage), "error={}", log::q(e.what()));
    return 1;
  }
}

int until_stopped(std::string_view stage, const std::function<int(const StopToken&)>& body) {
  StopToken stop;
  stop_on_signals(stop);
  return crash_guarded(stage, [&] { return body(stop); });
}

const config::Entity* reconciled_entity(const config::Config& cfg, const std::string& name,
                                        std::string_view command) {
  const auto* e = cfg.find_entity(name);
  if (e && !e->table.name.empty()) return e;
  std::fprintf(stderr, "ingestd %.*s: no entity '%s' with a table in the configuration\n",
               static_cast<int>(command.size()), command.data(), name.c_str());
  return nullptr;
}

std::unique_ptr<http::Server> metrics_server(std::string_view stage, const std::string& listen) {
  if (listen.empty()) return nullptr;
  auto server = std::make_unique<http::Server>(
      listen, std::map<std::string, http::Handler>{
                  {"/metrics", [] {
                     return http::Response{200, "text/plain; version=0.0.4; charset=utf-8",
                                           metrics::exposition()};
                   }}});
  log::info(fmt::format("{}.metrics_listening", stage), "address={} port={}", log::q(listen),
            server->port());
  return server;
}

}  // namespace ingestd::cli
