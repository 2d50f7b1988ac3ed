// `ingestd resync --entity E --from D --to D` / `--full`: the manual repair. It fetches the
// window (a repair run) or everything (a full run), stages it, reconciles it, and reports
// what the run's records did to production.
//
// It runs next to the long-lived stages without double work, because it adds no mechanism of
// its own: its fetch is an ordinary run written to the shared spool; its stager pass and
// theirs share the files through the ledger (each file is staged once, by whoever claims it);
// its reconciler passes and theirs share the rows through FOR UPDATE SKIP LOCKED. So it
// cannot count what its own threads did. It counts from the database instead, per record
// of its run (resync_tally.hpp): each record's content hash names its staging row, and that
// row's outcome and applied_as say new / changed / unchanged / superseded / failed,
// whichever process applied it.
//
// Phases: fetch (with a private checkpoint directory, so that the long-lived fetcher's
// checkpoint, which it reloads every cycle, never sees the repair run and this run never
// resumes theirs); stage (one pass, then wait until the ledger holds every page of the run);
// reconcile (passes of its own until no record of the run is due; rows in backoff end the
// wait and count as failed for now). --timeout bounds every wait after the fetch by how long
// nothing moves: no page staged, no row settled. Exit 0 when every record reached
// production (or was already there), 1 when anything failed (said on stderr), 2 on usage or
// configuration errors.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "core/cli/commands.hpp"
#include "core/cli/common.hpp"
#include "core/cli/resync_report.hpp"
#include "core/cli/resync_tally.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"
#include "core/stop.hpp"
#include "core/time.hpp"
#include "fetcher/fetcher.hpp"
#include "reconciler/reconciler.hpp"
#include "staging/stager.hpp"

namespace ingestd::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr milliseconds kTick{250};

struct Request {
  std::string entity;
  fetcher::Mode mode = fetcher::Mode::repair;
  std::optional<SysTime> from, to;
  milliseconds timeout{};
  std::string timeout_text;  // as given, for messages
  bool json = false;
};

// "2026-10-01" is midnight UTC; anything else must be RFC 3339.
std::optional<SysTime> parse_when(const std::string& text) {
  if (text.size() == 10 && text[4] == '-' && text[7] == '-')
    return parse_rfc3339(text + "T00:00:00Z");
  return parse_rfc3339(text);
}

std::string plural(std::int64_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

// On a terminal one line rewritten in place; otherwise nothing here, and one log line per
// phase (resync.fetched, .staged, .reconciled, .finished) tells a journal how it went.
class Progress {
 public:
  explicit Progress(bool tty) : tty_(tty) {}
  void show(const std::string& text) {
    if (!tty_ || text == last_) return;
    last_ = text;
    std::fprintf(stderr, "\r\033[K%s", text.c_str());
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (shown_) std::fputs("\r\033[K", stderr);
    last_.clear();
    shown_ = false;
  }

 private:
  bool tty_;
  bool shown_ = false;
  std::string last_;
};

// Runs `work` on its own thread and `tick` every kTick on this one until it returns. When
// `tick` throws (the database went away), `pass_stop` ends the work before the error goes up:
// the future's destructor would otherwise wait for a stage that waits out the outage.
template <class Work>
auto while_ticking(Work&& work, const std::function<void()>& tick, StopToken& pass_stop) {
  auto done = std::async(std::launch::async, std::forward<Work>(work));
  try {
    while (done.wait_for(kTick) != std::future_status::ready) tick();
  } catch (...) {
    pass_stop.request_stop();
    done.wait();
    throw;
  }
  return done.get();
}

// The config the embedded stages run with: no metrics listeners (the long-lived stages own
// those ports).
config::Config embedded(const config::Config& cfg) {
  config::Config c = cfg;
  c.monitor_listen.clear();
  c.fetcher_metrics_listen.clear();
  c.staging_metrics_listen.clear();
  c.reconciler_metrics_listen.clear();
  return c;
}

class Resync {
 public:
  Resync(const config::Config& cfg, const config::Entity& entity, const Request& req,
         StopToken& stop)
      : cfg_(cfg),
        entity_(entity),
        req_(req),
        stop_(stop),
        progress_(::isatty(STDERR_FILENO) == 1),
        conn_(pg::Connection::open(
            {cfg.database_url, "ingestd-resync", cfg.database_connect_timeout}, never_)) {}

  // 2 when the schema predates sql/008 (say so), else whether it ran through.
  int run() {
    if (conn_
            .query("SELECT 1 FROM information_schema.columns WHERE table_schema = "
                   "current_schema() AND table_name = $1 AND column_name = 'applied_as'",
                   "stg_" + entity_.name)
            .rows() == 0) {
      std::fprintf(stderr,
                   "ingestd resync: stg_%s has no applied_as column (sql/008): run `ingestd "
                   "migrate` first\n",
                   entity_.name.c_str());
      return 2;
    }
    since_ = std::string(conn_.query("SELECT now()::text").get(0, 0));
    fetch();
    if (!result_.run_id.empty() && (result_.pages > 0 || result_.complete) &&
        !stop_.stop_requested()) {
      stage();
      contents_ = repair::read_run(conn_, cfg_, entity_, result_.run_id);
      reconcile();
      placeholders_ = repair::placeholders(conn_, cfg_, entity_, contents_, since_);
    }
    progress_.clear();
    if (stop_.stop_requested())
      errors_.push_back(
          "interrupted: what was fetched stays in the spool and the queue for the long-lived "
          "stages");
    return report() ? 0 : 1;
  }

 private:
  void fetch() {
    auto fcfg = embedded(cfg_);
    // A private checkpoint: see the comment at the top.
    fcfg.fetcher_state_dir =
        cfg_.fetcher_state_dir / "resync" / fmt::format("{}-{}", entity_.name, ::getpid());
    std::error_code ec;
    std::filesystem::remove_all(fcfg.fetcher_state_dir, ec);
    const auto& e = *fcfg.find_entity(entity_.name);
    {
      fetcher::Fetcher f(fcfg, stop_);
      const auto& m = f.metrics(e.name);
      result_ = while_ticking(
          [&] {
            return f.run_entity(e, fetcher::RunRequest{req_.mode, req_.from, req_.to});
          },
          [&] {
            progress_.show(fmt::format("resync {}: fetching... {}, {}", e.name,
                                       plural(m.records.load(), "record"),
                                       plural(m.pages.load(), "page")));
          },
          stop_);
    }
    std::filesystem::remove_all(fcfg.fetcher_state_dir, ec);
    log::info("resync.fetched", "entity={} run_id={} mode={} pages={} records={} complete={}",
              e.name, result_.run_id, fetcher::mode_name(result_.mode), result_.pages,
              result_.records, result_.complete);
    if (!result_.complete && !stop_.stop_requested())
      errors_.push_back(result_.error.empty()
                            ? std::string("the fetch did not complete")
                            : "the fetch did not complete: " + log::redact(result_.error));
  }

  // Something moved (a page staged, a row settled): the --timeout clock starts again.
  void moved() { last_move_ = Clock::now(); }
  [[nodiscard]] bool stalled() const { return Clock::now() - last_move_ > req_.timeout; }

  void stage() {
    auto scfg = embedded(cfg_);
    scfg.entities = {entity_};  // the stager stages only what it is configured for
    moved();
    StopToken pass_stop;
    const auto expected = repair::written_pages(cfg_, entity_.name, result_.run_id);
    std::int64_t files = -1;
    auto tick = [&] {
      if (stop_.stop_requested() || stalled()) pass_stop.request_stop();
      auto s = repair::staged(conn_, entity_.name, result_.run_id);
      if (s.files != files) moved();
      files = s.files;
      progress_.show(
          fmt::format("resync {}: staging... {} of {} pages", entity_.name, s.files, expected));
    };
    (void)while_ticking(
        [&] { return staging::run(scfg, pass_stop, staging::RunMode::until_empty); }, tick,
        pass_stop);
    // A concurrent stager may still hold some of the run's files in a transaction.
    for (;;) {
      staged_ = repair::staged(conn_, entity_.name, result_.run_id);
      if (staged_.files >= expected || stop_.stop_requested()) break;
      if (staged_.files != files) moved();
      files = staged_.files;
      if (stalled()) {
        errors_.push_back(fmt::format(
            "only {} of {} pages staged after {} without progress (is a stager failing? see "
            "stager.entity_failed in the log)",
            staged_.files, expected, req_.timeout_text));
        break;
      }
      tick();
      stop_.wait_for(kTick);
    }
    log::info("resync.staged", "entity={} run_id={} pages={} records={} staged={} duplicates={}",
              entity_.name, result_.run_id, staged_.files, staged_.records, staged_.staged,
              staged_.duplicates);
  }

  void reconcile() {
    if (!contents_.unreadable.empty())
      errors_.push_back(
          fmt::format("{} no longer in the spool (first: {})",
                      plural(static_cast<std::int64_t>(contents_.unreadable.size()), "staged page"),
                      contents_.unreadable.front()));
    auto rcfg = embedded(cfg_);
    const bool full = req_.mode == fetcher::Mode::full && result_.complete;
    std::int64_t left = -1, waiting = -1;
    // Between passes: short while rows settle, longer (up to 5 s) while nothing moves.
    milliseconds pause = kTick * 2;
    moved();
    for (;;) {
      StopToken pass_stop;
      reconciler::Totals totals;
      int rc = while_ticking(
          [&] {
            return reconciler::run(rcfg, pass_stop,
                                   {reconciler::RunMode::until_empty, entity_.name}, &totals);
          },
          [&] {
            if (stop_.stop_requested() || stalled()) pass_stop.request_stop();
            auto n = repair::unprocessed(conn_, entity_.name, result_.run_id);
            if (n != left) moved();
            left = n;
            progress_.show(fmt::format("resync {}: reconciling... {} of {} staged rows settled",
                                       entity_.name, staged_.staged - n, staged_.staged));
          },
          pass_stop);
      tally_ = repair::tally(conn_, entity_, contents_, since_);
      if (full) full_ = repair::full_run(conn_, entity_.name, result_.run_id);
      if (tally_.waiting != waiting) moved();
      waiting = tally_.waiting;
      pause = Clock::now() - last_move_ < pause
                  ? kTick * 2
                  : std::min<milliseconds>(pause * 2, milliseconds(5000));
      // Rows in backoff end the wait: they are reported, not waited for. A full run's
      // deletions wait for every row fetched before its end, retrying ones included.
      bool deletions_due = full && !full_.settled && tally_.retrying == 0;
      if (tally_.waiting == 0 && !deletions_due) break;
      if (stop_.stop_requested()) break;
      if (rc != 0 && tally_.waiting > 0) {
        errors_.push_back(fmt::format(
            "the reconciler could not process {} (see reconciler.entity_failed in the log)",
            entity_.name));
        break;
      }
      if (stalled()) {
        if (tally_.waiting == 0)
          errors_.push_back(fmt::format(
              "the full run's deletions were not applied after {} without progress: the "
              "reconciler applies them once every page the run counts is staged ({} of {} are) "
              "and no row of the entity fetched before its end still waits or retries",
              req_.timeout_text, full_.pages_staged, full_.pages));
        break;
      }
      stop_.wait_for(pause);
    }
    if (full && full_.deletion == "refused")
      errors_.push_back(
          "deletions refused: the run would delete more than reconciler.max_delete_fraction of "
          "the live rows (see reconciler.deletion_refused in the log)");
    log::info("resync.reconciled",
              "entity={} run_id={} new={} changed={} unchanged={} superseded={} failed={}",
              entity_.name, result_.run_id, tally_.new_rows, tally_.changed, tally_.unchanged,
              tally_.superseded, tally_.failed());
  }

  // Prints the report; true when nothing failed.
  bool report() const {
    repair::Report r;
    r.entity = entity_.name;
    r.mode = std::string(fetcher::mode_name(req_.mode));
    r.from = req_.from;
    r.to = req_.to;
    r.run_id = result_.run_id;
    r.complete = result_.complete;
    r.fetched = result_.records;
    r.pages = result_.pages;
    r.read = contents_.records;
    r.staged = staged_;
    r.tally = tally_;
    r.placeholders = placeholders_;
    if (req_.mode == fetcher::Mode::full) r.full = full_;
    r.errors = errors_;
    r.max_attempts = cfg_.reconciler_max_attempts;
    r.timeout = req_.timeout_text;
    auto failures = repair::failures(r);
    auto out = req_.json ? repair::render_json(r, failures) : repair::render_text(r);
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    if (!failures.empty()) {
      std::string all;
      for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
      std::fprintf(stderr, "ingestd resync: %s: %s\n", entity_.name.c_str(),
                   log::redact(all).c_str());
    }
    log::info("resync.finished",
              "entity={} run_id={} fetched={} new={} changed={} unchanged={} placeholders={} "
              "failed={} ok={}",
              entity_.name, result_.run_id, result_.records, tally_.new_rows, tally_.changed,
              tally_.unchanged, placeholders_, tally_.failed(), failures.empty());
    return failures.empty();
  }

  const config::Config& cfg_;
  const config::Entity& entity_;
  const Request& req_;
  StopToken& stop_;
  Progress progress_;
  // Never interrupted by a signal: after SIGINT the report still needs its queries.
  StopToken never_;
  pg::Connection conn_;
  std::string since_;  // the database's now() at the start
  Clock::time_point last_move_ = Clock::now();
  fetcher::RunResult result_;
  repair::Staged staged_;
  repair::Contents contents_;
  repair::Tally tally_;
  repair::FullRun full_;
  std::int64_t placeholders_ = 0;
  std::vector<std::string> errors_;
};

}  // namespace

int resync(const Args& args) {
  int code = 0;
  po::options_description extra;
  extra.add_options()("entity", po::value<std::string>(), "the entity to resync (required)")(
      "from", po::value<std::string>(), "window start: YYYY-MM-DD (00:00Z) or RFC 3339")(
      "to", po::value<std::string>(), "window end (exclusive), same forms")(
      "full", "refetch everything (a full run: deletions are applied as after any full run)")(
      "timeout", po::value<std::string>()->default_value("5m"),
      "give up waiting after this long without progress (staging, reconciling)")(
      "json", "print the report as one JSON document")(
      "verbose", "on a terminal, also print the stages' info log lines");
  auto vm = parse(args, "resync", extra, &code);
  if (!vm) return code;
  auto usage = [](const std::string& why) {
    std::fprintf(stderr, "ingestd resync: %s\n", why.c_str());
    return 2;
  };
  Request req;
  if (!vm->count("entity")) return usage("--entity E is required");
  req.entity = (*vm)["entity"].as<std::string>();
  bool window = vm->count("from") || vm->count("to");
  if (vm->count("full") && window) return usage("give either --full or --from/--to, not both");
  if (!vm->count("full") && !window) return usage("give a window (--from D --to D) or --full");
  if (window && !(vm->count("from") && vm->count("to")))
    return usage(vm->count("from") ? "--from needs --to" : "--to needs --from");
  if (vm->count("full")) req.mode = fetcher::Mode::full;
  for (const char* key : {"from", "to"}) {
    if (!vm->count(key)) continue;
    auto t = parse_when((*vm)[key].as<std::string>());
    if (!t)
      return usage(fmt::format("--{} '{}' is neither a date (YYYY-MM-DD) nor an RFC 3339 time", key,
                               (*vm)[key].as<std::string>()));
    (std::string_view(key) == "from" ? req.from : req.to) = t;
  }
  if (req.from && *req.from >= *req.to) return usage("--from must be before --to");
  auto timeout = config::parse_duration((*vm)["timeout"].as<std::string>());
  if (!timeout || timeout->count() <= 0)
    return usage("--timeout must be a duration such as 30s or 5m");
  req.timeout = *timeout;
  req.timeout_text = (*vm)["timeout"].as<std::string>();
  req.json = vm->count("json") > 0;
  auto cfg = load_config(*vm);
  if (!cfg) return 2;
  const auto* entity = reconciled_entity(*cfg, req.entity, "resync");
  if (!entity) return 2;
  // On a terminal the progress line stands for the stages' info lines.
  if (::isatty(STDERR_FILENO) == 1 && !vm->count("verbose") &&
      (cfg->log_level == "trace" || cfg->log_level == "debug" || cfg->log_level == "info"))
    log::init("warn");
  StopToken stop;
  stop_on_signals(stop);
  try {
    Resync r(*cfg, *entity, req, stop);
    return r.run();
  } catch (const std::exception& e) {
    log::error("resync.failed", "entity={} error={}", req.entity, log::q(e.what()));
    std::fprintf(stderr, "\ningestd resync: %s: %s\n", req.entity.c_str(),
                 log::redact(e.what()).c_str());
    return 1;
  }
}

}  // namespace ingestd::cli
