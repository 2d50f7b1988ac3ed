// What every subcommand shares: option parsing with --config, config loading that prints
// every error, and running a stage under a stop token wired to SIGTERM/SIGINT.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/program_options.hpp>

#include "core/cli/commands.hpp"
#include "core/config.hpp"

namespace ingestd {
class StopToken;
namespace http {
class Server;
}
}  // namespace ingestd

namespace ingestd::cli {

namespace po = boost::program_options;

// $INGESTD_CONFIG, else /etc/ingestd/ingestd.yaml.
[[nodiscard]] std::string default_config_path();

// Parses the options common to every command plus `extra`; nullopt means "exit with *code"
// (2 after a usage error, 0 after --help).
std::optional<po::variables_map> parse(const Args& args, std::string_view command,
                                       po::options_description extra, int* code);

// Loads the config or prints every error; configures logging from it.
std::optional<config::Config> load_config(const po::variables_map& vm);

// An exception escaping a stage (a startup failure such as an unwritable spool) is logged as
// <stage>.crashed and becomes exit code 1.
int crash_guarded(std::string_view stage, const std::function<int()>& body);

// Runs a stage with SIGTERM/SIGINT wired to its stop token.
int until_stopped(std::string_view stage, const std::function<int(const StopToken&)>& body);

// The process metrics server of a long-lived stage (`listen` from <stage>.metrics_listen):
// nullptr when not configured. Throws std::runtime_error when the address cannot be bound.
[[nodiscard]] std::unique_ptr<http::Server> metrics_server(std::string_view stage,
                                                           const std::string& listen);

// The configured entity `name` if it has a table; otherwise says so and returns nullptr.
const config::Entity* reconciled_entity(const config::Config& cfg, const std::string& name,
                                        std::string_view command);

}  // namespace ingestd::cli
