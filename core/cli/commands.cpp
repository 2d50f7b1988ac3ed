#include "core/cli/commands.hpp"

#include "core/cli/common.hpp"
#include "core/http_server.hpp"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>

#include <boost/program_options.hpp>

#include "core/config.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/migrations.hpp"
#include "core/notify.hpp"
#include "core/parallel.hpp"
#include "core/pg.hpp"
#include "core/stop.hpp"
#include "core/time.hpp"
#include "fetcher/fetcher.hpp"
#include "monitor/monitor.hpp"
#include "reconciler/placeholders.hpp"
#include "reconciler/reconciler.hpp"
#include "reconciler/schema.hpp"
#include "staging/stager.hpp"

namespace ingestd::cli {

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
    auto tables = reconciler::ensure_tables(conn, *cfg);
    std::printf("production tables: %zu created, %zu columns or keys added\n",
                tables.created.size(), tables.added.size());
    for (const auto& t : tables.created) std::printf("  + %s\n", t.c_str());
    for (const auto& t : tables.added) std::printf("  + %s\n", t.c_str());
    for (const auto& p : tables.problems) std::fprintf(stderr, "  ! %s\n", p.c_str());
    if (!tables.problems.empty()) {
      std::fprintf(stderr, "ingestd migrate: %zu problem(s) with production tables\n",
                   tables.problems.size());
      return 1;
    }
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
  return until_stopped("stager", [&](const StopToken& stop) {
    auto server = mode == staging::RunMode::forever
                      ? metrics_server("stager", cfg->staging_metrics_listen)
                      : nullptr;
    return staging::run(*cfg, stop, mode);
  });
}
}  // namespace

int fetcher(const Args& args) {
  int code = 0;
  auto vm = parse(args, "fetcher", po::options_description{}, &code);
  if (!vm) return code;
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  return until_stopped("fetcher", [&](const StopToken& stop) {
    auto server = metrics_server("fetcher", cfg->fetcher_metrics_listen);
    fetcher::Fetcher f(*cfg, stop);
    return f.run_forever();
  });
}

int fetch(const Args& args) {
  int code = 0;
  po::options_description extra;
  extra.add_options()("once", "fetch, then exit (required)")("entity", po::value<std::string>(),
                                                             "only this entity (default: all)")(
      "mode", po::value<std::string>(), "incremental | full | repair (default: as scheduled)")(
      "from", po::value<std::string>(), "repair window start (RFC 3339)")(
      "to", po::value<std::string>(), "repair window end (RFC 3339)");
  auto vm = parse(args, "fetch", extra, &code);
  if (!vm) return code;
  if (!vm->count("once")) {
    std::fprintf(stderr,
                 "ingestd fetch: only --once is supported; use `ingestd fetcher` for "
                 "the long-lived fetcher\n");
    return 2;
  }
  std::optional<fetcher::RunRequest> request;
  if (vm->count("mode")) {
    auto mode = fetcher::parse_mode((*vm)["mode"].as<std::string>());
    if (!mode) {
      std::fprintf(stderr, "ingestd fetch: --mode must be incremental, full or repair\n");
      return 2;
    }
    request = fetcher::RunRequest{*mode, std::nullopt, std::nullopt};
    for (const char* key : {"from", "to"}) {
      if (!vm->count(key)) continue;
      auto t = parse_rfc3339((*vm)[key].as<std::string>());
      if (!t) {
        std::fprintf(stderr, "ingestd fetch: --%s is not an RFC 3339 time\n", key);
        return 2;
      }
      (std::string_view(key) == "from" ? request->from : request->to) = t;
    }
    if (*mode == fetcher::Mode::repair && !request->from) {
      std::fprintf(stderr, "ingestd fetch: --mode repair needs --from (and usually --to)\n");
      return 2;
    }
  }
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  const config::Entity* only = nullptr;
  if (vm->count("entity")) {
    only = cfg->find_entity((*vm)["entity"].as<std::string>());
    if (!only) {
      std::fprintf(stderr, "ingestd fetch: no entity '%s' in the configuration\n",
                   (*vm)["entity"].as<std::string>().c_str());
      return 2;
    }
  }
  StopToken stop;
  stop_on_signals(stop);
  try {
    fetcher::Fetcher f(*cfg, stop);
    bool all_complete = true;
    for (const auto& e : cfg->entities) {
      if (only && only != &e) continue;
      auto r = f.run_entity(e, request);
      std::printf("%s: %s run %s, %lld pages, %lld records%s%s\n", e.name.c_str(),
                  std::string(fetcher::mode_name(r.mode)).c_str(),
                  r.complete ? "complete" : "incomplete", static_cast<long long>(r.pages),
                  static_cast<long long>(r.records), r.error.empty() ? "" : ": ",
                  log::redact(r.error).c_str());
      all_complete = all_complete && r.complete;
      if (stop.stop_requested()) break;
    }
    return all_complete ? 0 : 1;
  } catch (const std::exception& e) {
    log::error("fetch.failed", "error={}", log::q(e.what()));
    return 1;
  }
}

namespace {
int run_reconciler(const Args& args, std::string_view command, reconciler::RunMode mode) {
  int code = 0;
  po::options_description extra;
  if (mode == reconciler::RunMode::until_empty)
    extra.add_options()("once", "reconcile what is due, then exit (required)")(
        "entity", po::value<std::string>(), "only this entity (default: all)");
  auto vm = parse(args, command, extra, &code);
  if (!vm) return code;
  if (mode == reconciler::RunMode::until_empty && !vm->count("once")) {
    std::fprintf(stderr,
                 "ingestd reconcile: only --once is supported; use `ingestd reconciler` for "
                 "the long-lived reconciler\n");
    return 2;
  }
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  reconciler::Options opts{mode, {}};
  if (vm->count("entity")) {
    opts.only_entity = (*vm)["entity"].as<std::string>();
    if (!reconciled_entity(*cfg, opts.only_entity, command)) return 2;
  }
  return until_stopped("reconciler", [&](const StopToken& stop) {
    auto server = mode == reconciler::RunMode::forever
                      ? metrics_server("reconciler", cfg->reconciler_metrics_listen)
                      : nullptr;
    reconciler::Totals t;
    int rc = reconciler::run(*cfg, stop, opts, &t);
    if (mode == reconciler::RunMode::until_empty)
      std::printf(
          "applied %lld (new %lld, filled %lld, changed %lld, unchanged %lld), superseded "
          "%lld, skipped %lld, retry later %lld, dead %lld, placeholders %lld, deleted %lld\n",
          static_cast<long long>(t.applied), static_cast<long long>(t.applied_new),
          static_cast<long long>(t.applied_filled), static_cast<long long>(t.applied_changed),
          static_cast<long long>(t.applied_unchanged), static_cast<long long>(t.superseded),
          static_cast<long long>(t.skipped), static_cast<long long>(t.retried),
          static_cast<long long>(t.dead), static_cast<long long>(t.placeholders),
          static_cast<long long>(t.deleted));
    return rc;
  });
}
}  // namespace

int reconciler(const Args& args) {
  return run_reconciler(args, "reconciler", reconciler::RunMode::forever);
}
int reconcile(const Args& args) {
  return run_reconciler(args, "reconcile", reconciler::RunMode::until_empty);
}

int requeue(const Args& args) {
  int code = 0;
  po::options_description extra;
  extra.add_options()("entity", po::value<std::string>(), "the entity (required)")(
      "dead", "requeue rows that failed reconciler.max_attempts times (the default)")(
      "skipped", "requeue rows skipped as invalid (after fixing the mapping or the data)");
  auto vm = parse(args, "requeue", extra, &code);
  if (!vm) return code;
  if (!vm->count("entity") || (vm->count("dead") && vm->count("skipped"))) {
    std::fprintf(stderr, "ingestd requeue: give --entity E and at most one of --dead, --skipped\n");
    return 2;
  }
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  const auto* e = reconciled_entity(*cfg, (*vm)["entity"].as<std::string>(), "requeue");
  if (!e) return 2;
  StopToken stop;
  stop_on_signals(stop);
  try {
    auto conn = pg::Connection::open(
        {cfg->database_url, "ingestd-requeue", cfg->database_connect_timeout}, stop);
    auto which = vm->count("skipped") ? reconciler::Requeue::skipped : reconciler::Requeue::dead;
    auto n = reconciler::requeue(conn, *e, which);
    std::printf("%s: %lld %s row(s) back in line\n", e->name.c_str(), static_cast<long long>(n),
                which == reconciler::Requeue::dead ? "dead" : "skipped");
    return 0;
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "ingestd requeue: %s\n", log::redact(ex.what()).c_str());
    return 1;
  }
}

int placeholders(const Args& args) {
  int code = 0;
  po::options_description extra;
  extra.add_options()("entity", po::value<std::string>(), "only this entity's table")(
      "limit", po::value<std::int64_t>()->default_value(100), "rows per entity, oldest first")(
      "json", "one JSON document instead of the table");
  auto vm = parse(args, "placeholders", extra, &code);
  if (!vm) return code;
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  std::string only = vm->count("entity") ? (*vm)["entity"].as<std::string>() : "";
  if (!only.empty() && !reconciled_entity(*cfg, only, "placeholders")) return 2;
  StopToken stop;
  stop_on_signals(stop);
  try {
    auto conn = pg::Connection::open(
        {cfg->database_url, "ingestd-placeholders", cfg->database_connect_timeout}, stop);
    auto report =
        reconciler::open_placeholders(conn, *cfg, only, (*vm)["limit"].as<std::int64_t>());
    if (vm->count("json")) {
      std::string out = "{\"open\":{";
      for (std::size_t i = 0; i < report.open_per_entity.size(); ++i)
        out += fmt::format("{}{}:{}", i ? "," : "", json_quote(report.open_per_entity[i].first),
                           report.open_per_entity[i].second);
      out += "},\"placeholders\":[";
      for (std::size_t i = 0; i < report.rows.size(); ++i) {
        const auto& p = report.rows[i];
        out += fmt::format("{}{{\"entity\":{},\"id\":{},\"since\":{},\"referenced_by\":[",
                           i ? "," : "", json_quote(p.entity), json_quote(p.id),
                           json_quote(p.created_at));
        for (std::size_t j = 0; j < p.referenced_by.size(); ++j) {
          const auto& r = p.referenced_by[j];
          out += fmt::format("{}{{\"from\":{},\"rows\":{},\"example\":{}}}", j ? "," : "",
                             json_quote(r.from), r.rows, json_quote(r.example));
        }
        out += "]}";
      }
      std::printf("%s]}\n", out.c_str());
      return 0;
    }
    std::printf("%-20s %-24s %-24s %s\n", "entity", "id", "since", "referenced by");
    for (const auto& p : report.rows) {
      std::string refs;
      for (const auto& r : p.referenced_by)
        refs +=
            fmt::format("{}{} x{} (e.g. {})", refs.empty() ? "" : ", ", r.from, r.rows, r.example);
      std::printf("%-20s %-24s %-24s %s\n", p.entity.c_str(), p.id.c_str(),
                  p.created_at.substr(0, 19).c_str(), refs.empty() ? "-" : refs.c_str());
    }
    std::string totals;
    for (const auto& [entity, n] : report.open_per_entity)
      totals += fmt::format("{}{} {}", totals.empty() ? "" : ", ", entity, n);
    std::printf("open placeholders: %s\n", totals.c_str());
    return 0;
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "ingestd placeholders: %s\n", log::redact(ex.what()).c_str());
    return 1;
  }
}

// Fetcher, stager and reconciler in one process, each on its own thread(s), sharing one stop:
// SIGTERM stops all three as the separate services stop; a stage that crashes stops the others
// and the process exits 1, so systemd restarts the whole. systemd hears READY=1 once all four
// stages (the monitor too) are ready, and WATCHDOG=1 only while every loop of every stage
// beats (core/notify.hpp); the first stage to stop says STOPPING=1.
int run(const Args& args) {
  int code = 0;
  auto vm = parse(args, "run", po::options_description{}, &code);
  if (!vm) return code;
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  StopToken stop;
  stop_on_signals(stop);
  notify::expect({"monitor", "fetcher", "stager", "reconciler"});
  // The monitor serves /metrics (the stages' counters share this process's registry),
  // /health and /ready on monitor.listen; the stages' own metrics ports are not used here.
  monitor::Monitor mon(*cfg);
  if (crash_guarded("monitor", [&] {
        mon.start();
        return 0;
      }) != 0)
    return 1;
  notify::ready("monitor", "serving /metrics, /health, /ready");
  const std::array<std::pair<std::string_view, std::function<int()>>, 3> stages = {{
      {"fetcher", [&] { return fetcher::Fetcher(*cfg, stop).run_forever(); }},
      {"stager", [&] { return staging::run(*cfg, stop, staging::RunMode::forever); }},
      {"reconciler",
       [&] {
         return reconciler::run(*cfg, stop, {reconciler::RunMode::forever, ""});
       }},
  }};
  std::array<int, 3> codes{};
  log::info("run.started", "stages={}", "fetcher,stager,reconciler");
  int code_max = run_parallel(3, [&](int i) {
    auto& [name, body] = stages[static_cast<std::size_t>(i)];
    int rc = crash_guarded(name, body);
    if (rc != 0) stop.request_stop();  // one stage down: the process exits, systemd restarts it
    return codes[static_cast<std::size_t>(i)] = rc;
  });
  notify::stopping();  // already said by the first stage to stop; here if none started
  mon.stop();
  log::info("run.stopped", "fetcher={} stager={} reconciler={}", codes[0], codes[1], codes[2]);
  return code_max;
}

int stager(const Args& args) {
  return run_stager(args, "stager", staging::RunMode::forever);
}
int stage(const Args& args) {
  return run_stager(args, "stage", staging::RunMode::until_empty);
}

}  // namespace ingestd::cli
