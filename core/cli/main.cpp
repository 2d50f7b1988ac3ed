// ingestd: mirrors a SaaS API into PostgreSQL. See docs/ARCHITECTURE.md.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "core/cli/commands.hpp"

namespace {

struct Command {
  std::string_view name;
  int (*run)(const ingestd::cli::Args&);
  std::string_view summary;
};

constexpr Command kCommands[] = {
    {"run", ingestd::cli::run,
     "long-lived: fetcher, stager and reconciler in one process (small installs, the demo)"},
    {"fetcher", ingestd::cli::fetcher,
     "long-lived: fetch each entity on its schedule into the spool (no database needed)"},
    {"fetch", ingestd::cli::fetch,
     "fetch once (--once [--entity E] [--mode M] [--from T --to T]), then exit"},
    {"stager", ingestd::cli::stager,
     "long-lived: load spool files into stg_* tables, exactly once"},
    {"stage", ingestd::cli::stage, "stage what is waiting in the spool (--once), then exit"},
    {"reconciler", ingestd::cli::reconciler,
     "long-lived: apply staged rows to the production tables (several may run at once)"},
    {"reconcile", ingestd::cli::reconcile,
     "reconcile what is due (--once [--entity E]), then exit"},
    {"requeue", ingestd::cli::requeue,
     "put dead (or skipped) staging rows back in line (--entity E [--dead|--skipped])"},
    {"monitor", ingestd::cli::monitor,
     "long-lived: serve /metrics, /health and /ready from the database; send alerts"},
    {"status", ingestd::cli::status,
     "the health of every entity as a table (--json); exit 0 when all are healthy, else 1"},
    {"resync", ingestd::cli::resync,
     "refetch a window (--entity E --from D --to D) or everything (--full), follow it into "
     "production and count what changed"},
    {"placeholders", ingestd::cli::placeholders,
     "list placeholder rows still waiting for their record, with who references them"},
    {"migrate", ingestd::cli::migrate,
     "apply sql/ migrations, create the stg_* tables and the production tables"},
    {"check-config", ingestd::cli::check_config,
     "validate the YAML config; print the errors or the effective config"},
};

void usage(std::FILE* out) {
  std::fprintf(out, "usage: ingestd <command> [options]   (ingestd <command> --help)\n\n");
  for (const auto& c : kCommands)
    std::fprintf(out, "  %-14.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(),
                 static_cast<int>(c.summary.size()), c.summary.data());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string_view name = argv[1];
  for (const auto& c : kCommands)
    if (c.name == name) return c.run(ingestd::cli::Args(argv + 2, argv + argc));
  std::fprintf(stderr, "ingestd: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
