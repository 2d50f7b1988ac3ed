#include "core/cli/commands.hpp"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>

#include "core/config.hpp"
#include "core/log.hpp"
#include "core/migrations.hpp"
#include "core/pg.hpp"
#include "core/stop.hpp"
#include "staging/stager.hpp"

namespace ingestd::cli {
namespace po = boost::program_options;
namespace {

constexpr const char* kDefaultConfig = "/etc/ingestd/ingestd.yaml";

std::string default_config_path() {
  const char* env = std::getenv("INGESTD_CONFIG");
  return env ? env : kDefaultConfig;
}

// Parses the options common to every command plus `extra`; nullopt means "exit with *code".
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

// Loads the config or prints every error; configures logging from it.
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

}  // namespace

int check_config(const Args& args) {
  int code = 0;
  po::options_description extra;
  extra.add_options()("reference", "print the configuration reference (docs/CONFIG.md) and exit");
  auto vm = parse(args, "check-config", extra, &code);
  if (!vm) return code;
  if (vm->count("reference")) {
    std::fputs(config::render_reference().c_str(), stdout);
    return 0;
  }
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  std::fputs(config::render_effective(*cfg).c_str(), stdout);
  return 0;
}

int migrate(const Args& args) {
  int code = 0;
  auto vm = parse(args, "migrate", po::options_description{}, &code);
  if (!vm) return code;
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  StopToken stop;
  stop_on_signals(stop);
  try {
    auto conn = pg::Connection::open(
        {cfg->database_url, "ingestd-migrate", cfg->database_connect_timeout}, stop);
    auto report = migrations::migrate(conn, *cfg);
    std::printf("migrations applied: %zu (%zu known)\n", report.applied.size(),
                migrations::all().size());
    for (const auto& m : report.applied) std::printf("  + %s\n", m.c_str());
    for (const auto& m : report.drifted)
      std::printf("  ! %s changed after it was applied (write a new migration)\n", m.c_str());
    std::printf("staging tables: %zu\n", report.staging_tables.size());
    for (const auto& t : report.staging_tables) std::printf("  = %s\n", t.c_str());
    return 0;
  } catch (const std::exception& e) {
    log::error("migrate.failed", "error={}", log::q(e.what()));
    std::fprintf(stderr, "ingestd migrate: %s\n", log::redact(e.what()).c_str());
    return 1;
  }
}

namespace {
int run_stager(const Args& args, std::string_view command, staging::RunMode mode) {
  int code = 0;
  po::options_description extra;
  if (mode == staging::RunMode::until_empty)
    extra.add_options()("once", "stage what is waiting, then exit (required)");
  auto vm = parse(args, command, extra, &code);
  if (!vm) return code;
  if (mode == staging::RunMode::until_empty && !vm->count("once")) {
    std::fprintf(stderr,
                 "ingestd stage: only --once is supported; use `ingestd stager` for "
                 "the long-lived loader\n");
    return 2;
  }
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  StopToken stop;
  stop_on_signals(stop);
  try {
    return staging::run(*cfg, stop, mode);
  } catch (const std::exception& e) {
    log::error("stager.crashed", "error={}", log::q(e.what()));
    return 1;
  }
}
}  // namespace

int stager(const Args& args) {
  return run_stager(args, "stager", staging::RunMode::forever);
}
int stage(const Args& args) {
  return run_stager(args, "stage", staging::RunMode::until_empty);
}

}  // namespace ingestd::cli
