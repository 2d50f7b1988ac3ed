// The subcommands of `ingestd`. Each returns the process exit code:
// 0 success, 1 runtime failure, 2 bad usage or bad configuration.
#pragma once

#include <string>
#include <vector>

namespace ingestd::cli {

using Args = std::vector<std::string>;

int check_config(const Args& args);
int migrate(const Args& args);
int stager(const Args& args);      // long-lived
int stage(const Args& args);       // stage --once
int fetcher(const Args& args);     // long-lived
int fetch(const Args& args);       // fetch --once
int reconciler(const Args& args);  // long-lived
int reconcile(const Args& args);   // reconcile --once
int requeue(const Args& args);
int placeholders(const Args& args);
int run(const Args& args);      // fetcher + stager + reconciler in one process
int monitor(const Args& args);  // long-lived: /metrics, /health, /ready, alerts
int status(const Args& args);   // exit 0 all healthy, 1 otherwise
int resync(const Args& args);   // core/cli/resync_command.cpp

}  // namespace ingestd::cli
