// `ingestd monitor` and `ingestd status`: the long-lived monitor and its one-shot view.
#include <cstdio>

#include "core/cli/commands.hpp"
#include "core/cli/common.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/stop.hpp"
#include "monitor/monitor.hpp"
#include "monitor/snapshot.hpp"

namespace ingestd::cli {

int monitor(const Args& args) {
  int code = 0;
  auto vm = parse(args, "monitor", po::options_description{}, &code);
  if (!vm) return code;
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  return until_stopped("monitor", [&](const StopToken& stop) { return monitor::run(*cfg, stop); });
}

// Exit status: 0 every entity healthy, 1 any degraded or failing (or the database
// unreachable), 2 bad usage or configuration. Scripts and cron checks rely on it.
int status(const Args& args) {
  int code = 0;
  po::options_description extra;
  extra.add_options()("json", "print the whole snapshot as one JSON document");
  auto vm = parse(args, "status", extra, &code);
  if (!vm) return code;
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  StopToken stop;
  stop_on_signals(stop);
  try {
    auto conn = pg::Connection::open(
        {cfg->database_url, "ingestd-status", cfg->database_connect_timeout}, stop);
    auto snap = monitor::take(conn, *cfg);
    auto text = vm->count("json") ? monitor::snapshot_json(snap) : monitor::status_text(snap);
    std::fputs(text.c_str(), stdout);
    return snap.overall() == monitor::Health::healthy ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ingestd status: %s\n", log::redact(e.what()).c_str());
    return 1;
  }
}

}  // namespace ingestd::cli
