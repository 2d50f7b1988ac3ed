// One entity's run: page after page, each durably spooled before its checkpoint.
#include <unistd.h>

#include <deque>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "core/backoff.hpp"
#include "core/failpoint.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/notify.hpp"
#include "core/spool.hpp"
#include "core/stop.hpp"
#include "fetcher/auth.hpp"
#include "fetcher/fetcher.hpp"
#include "fetcher/http.hpp"
#include "fetcher/page_writer.hpp"
#include "fetcher/rate_limiter.hpp"
#include "fetcher/response.hpp"
#include "fetcher/source_state.hpp"

namespace ingestd::fetcher {

namespace {
using Clock = std::chrono::steady_clock;

struct Stopped {};
struct GaveUp : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string new_run_id(const config::Entity& e, Mode mode) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  std::string t = format_rfc3339(std::chrono::system_clock::now());
  std::string compact;
  for (char c : t.substr(0, 19))
    if (c != '-' && c != ':') compact += c;
  return fmt::format("{}-{}-{}-{:04x}", e.name, mode_name(mode), compact, rng() & 0xffff);
}

std::string time_json(const std::optional<SysTime>& t) {
  return t ? json_quote(format_rfc3339(*t)) : "null";
}

// Retry-After: delta-seconds (HTTP dates are rare from APIs; they get the default backoff).
std::optional<std::chrono::milliseconds> retry_after(const HttpResponse& r) {
  auto h = r.header("retry-after");
  if (h.empty()) return std::nullopt;
  char* end = nullptr;
  double secs = std::strtod(h.c_str(), &end);
  if (end == h.c_str() || secs < 0) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(secs, 3600.0) * 1000));
}

// The envelope of the run's current page (the page number is the run's position).
spool::Meta spool_meta(const config::Entity& e, const RunState& run) {
  spool::Meta m;
  m.source = e.source;
  m.entity = e.name;
  m.run_id = run.run_id;
  m.mode = std::string(mode_name(run.mode));
  m.page = run.page;
  m.fetched_at = std::chrono::system_clock::now();
  return m;
}

// What the entity's counters said when a run (re)started: its summary reports the difference.
struct Baseline {
  std::int64_t requests = 0, retries = 0, throttled_ms = 0;
  std::map<long, std::int64_t> statuses;
  explicit Baseline(const Metrics& m)
      : requests(m.requests.load()),
        retries(m.retries.load()),
        throttled_ms(m.throttled_ms.load()),
        statuses(m.statuses()) {}
};

std::string hostname() {
  char buf[256] = {};
  return ::gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string("unknown");
}

// The run's sync_status row travels as a spool file (the fetcher has no database). Failing
// to write it costs observability, not data: logged, never fatal.
void write_summary(const config::Config& cfg, const config::Entity& e, const RunState& run,
                   const Metrics& m, const Baseline& base, std::string_view status,
                   const std::string& error, bool completed) {
  spool::Meta meta = spool_meta(e, run);
  spool::RunSummary& r = meta.summary;
  r.status = std::string(status);
  r.started_at = run.started_at;
  if (completed) r.completed_at = meta.fetched_at;
  r.records = run.records;
  r.pages = run.page;
  r.requests = m.requests.load() - base.requests;
  r.retries = m.retries.load() - base.retries;
  r.throttled_seconds = static_cast<double>(m.throttled_ms.load() - base.throttled_ms) / 1000.0;
  std::int64_t ok = 0;
  for (const auto& [code, n] : m.statuses()) {
    auto before = base.statuses.count(code) ? base.statuses.at(code) : 0;
    if (n - before <= 0) continue;
    r.statuses[std::to_string(code)] = n - before;
    if (code >= 200 && code < 300) ok += n - before;
  }
  r.failed_requests = std::max<std::int64_t>(0, r.requests - ok);
  r.error = error;
  static const std::string host = hostname();
  r.host = host;
  r.pid = ::getpid();
  try {
    spool::write_run_summary(cfg.spool_dir, meta);
  } catch (const std::exception& err) {
    log::warn("fetcher.summary_not_written", "entity={} run_id={} status={} error={}", e.name,
              run.run_id, status, log::q(err.what()));
  }
}

std::string origin_of(const std::string& url) {
  auto scheme = url.find("://");
  auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return slash == std::string::npos ? url : url.substr(0, slash);
}

// What to send for the next page, from the entity's request and the run's position.
struct Outgoing {
  std::string url;
  std::optional<std::string> body;  // POST when set
};

Outgoing next_request(const config::Source& src, const config::Entity& e, const RunState& run) {
  const auto& r = e.request;
  if (r.api == config::Request::Api::graphql) {
    std::string vars;
    if (r.pagination == "relay")
      vars = fmt::format("\"first\":{},\"after\":{},", r.page_size,
                         run.cursor.empty() ? "null" : json_quote(run.cursor));
    else if (r.pagination == "page_number")
      vars = fmt::format("\"page\":{},\"perPage\":{},", run.page, r.page_size);
    vars += fmt::format("\"since\":{},\"until\":{}", time_json(run.since), time_json(run.until));
    return {src.base_url, fmt::format("{{\"query\":{},\"variables\":{{{}}}}}",
                                      json_quote(r.graphql_query), vars)};
  }
  if (r.pagination == "next_link" && !run.cursor.empty())
    return {run.cursor.front() == '/' ? origin_of(src.base_url) + run.cursor : run.cursor, {}};
  std::string url = src.base_url + r.rest_path;
  std::vector<std::string> q;
  if (r.pagination == "page") {
    q.push_back(fmt::format("{}={}", r.param_page, run.page + 1));
    q.push_back(fmt::format("{}={}", r.param_limit, r.page_size));
  } else if (r.pagination == "offset") {
    q.push_back(fmt::format("{}={}", r.param_offset, run.records));
    q.push_back(fmt::format("{}={}", r.param_limit, r.page_size));
  } else if (r.pagination == "next_link") {
    q.push_back(fmt::format("{}={}", r.param_limit, r.page_size));
  }
  if (run.since)
    q.push_back(fmt::format("{}={}", r.param_since, url_encode(format_rfc3339(*run.since))));
  if (run.until)
    q.push_back(fmt::format("{}={}", r.param_until, url_encode(format_rfc3339(*run.until))));
  for (std::size_t i = 0; i < q.size(); ++i)
    url += (i == 0 && url.find('?') == std::string::npos ? "?" : "&") + q[i];
  return {url, {}};
}

}  // namespace

namespace {

bool operator==(const Outgoing& a, const Outgoing& b) {
  return a.url == b.url && a.body == b.body;
}

// Pipelining: the next page's request goes out as soon as this page's response is in, so that
// the upstream prepares it while this page is parsed and queued for the spool. Sent only when
// the next request does not depend on this page's body: for page, page_number and offset,
// after a full page (a run whose last page is short asks for pages past it, answered and
// discarded); for next_link, when the Link header names a next page. Never for Relay (the
// cursor is in the body) nor while the rate limit has no token to spare. `steps` ahead of
// `run` (1: the next page); beyond the next, only page, page_number and offset can tell.
std::optional<RunState> position_ahead(const config::Entity& e, const RunState& run,
                                       const HttpResponse& response, bool after_full_page,
                                       std::int64_t steps) {
  const auto& pagination = e.request.pagination;
  RunState next = run;
  next.page += steps;
  if (pagination == "next_link") {
    if (steps != 1) return std::nullopt;
    next.cursor = next_link(response.header("link"));
    if (next.cursor.empty()) return std::nullopt;
    return next;
  }
  if (after_full_page && e.request.page_size > 0 &&
      (pagination == "page" || pagination == "page_number" || pagination == "offset")) {
    next.records += e.request.page_size * steps;
    return next;
  }
  return std::nullopt;
}

// One entity's connections and the requests sent ahead on them, oldest (nearest page) first.
// `sources.*.requests_in_flight` clients sharing one curl multi handle: with N, up to N pages
// are asked at once, each on its own kept-alive connection (curl no longer pipelines HTTP/1.1
// on one), and all of them progress while the fetcher waits for the first.
class Requests {
 public:
  Requests(const config::Source& s, const StopToken& stop) {
    for (std::int64_t i = 0; i < std::max<std::int64_t>(1, s.requests_in_flight); ++i)
      clients_.push_back(std::make_unique<HttpClient>(
          s.timeout, s.tls_verify, stop, clients_.empty() ? nullptr : clients_.front().get()));
  }
  struct Sent {
    Outgoing out;
    HttpClient* http;
  };
  std::deque<Sent> ahead;

  // Off for the rest of the run once a guess missed (an offset API that returns more records
  // than asked, say): every page would otherwise cost N requests thrown away.
  bool guessing = true;

  [[nodiscard]] bool can_send_ahead() const { return guessing && ahead.size() < clients_.size(); }
  // A connection with nothing in flight; there is one whenever can_send_ahead() or nothing
  // is ahead.
  HttpClient& idle() {
    for (auto& c : clients_)
      if (!c->busy()) return *c;
    throw std::logic_error("Requests::idle: every connection has a request in flight");
  }

 private:
  std::vector<std::unique_ptr<HttpClient>> clients_;
};

// Sends `out` with the source's credentials (may fetch a token first) without waiting.
void send(Fetcher::SourceState& src, HttpClient& http, const Outgoing& out) {
  auto headers = src.auth.headers(http);
  headers.push_back("Accept: application/json");
  if (out.body) headers.push_back("Content-Type: application/json");
  http.start(out.url, out.body, headers);
}

void count_response(const config::Entity& e, Metrics& m, long status) {
  ++m.requests;
  m.count_status(status);
  metrics::upstream_requests(e.name, status).Increment();
}

// Requests sent ahead that turned out not to be needed (the run ended, the guess missed, the
// page they followed failed and is asked again): their answers are read and dropped, all
// within one timeout (an upstream that hangs costs one timeout, not one per request). They
// count in ingestd_upstream_requests_total (the upstream saw them) but not in the run's
// summary, whose failed requests are those of pages it fetched (an API may answer 404 past
// the end). A Retry-After in one still pauses the source. Stopping, they are abandoned
// instead: shutdown must not wait for answers nobody needs.
void discard_ahead(Fetcher::SourceState& src, const config::Entity& e, Requests& requests,
                   const StopToken& stop) {
  const auto by = Clock::now() + src.source.timeout;
  while (!requests.ahead.empty()) {
    HttpClient& http = *requests.ahead.front().http;
    requests.ahead.pop_front();
    if (stop.stop_requested()) {
      http.abort();
      continue;
    }
    notify::beat();  // the wait below is one more request's worth
    try {
      auto r = http.complete(by);
      metrics::upstream_requests(e.name, r.status).Increment();
      if (auto ra = retry_after(r); ra && (r.status == 429 || r.status == 503))
        src.limiter.close_until(Clock::now() + *ra);
    } catch (const TransportError&) {
      metrics::upstream_requests(e.name, 0).Increment();
    }
  }
}

// After a page's answer came in whole: asks for the pages after it that position_ahead() can
// tell, as long as a connection and a rate-limit token are free. Optional: a page that cannot
// be asked now (a token request failing, say) is asked in turn and meets the problem there,
// with its retries.
void send_ahead(Fetcher::SourceState& src, const config::Entity& e, const RunState& run,
                const HttpResponse& response, bool after_full_page, Requests& requests,
                const StopToken& stop) {
  while (requests.can_send_ahead() && !stop.stop_requested()) {
    auto steps = static_cast<std::int64_t>(requests.ahead.size()) + 1;
    auto next = position_ahead(e, run, response, after_full_page, steps);
    if (!next || !src.limiter.try_acquire()) return;
    try {
      HttpClient& http = requests.idle();
      requests.ahead.push_back({next_request(src.source, e, *next), &http});
      try {
        send(src, http, requests.ahead.back().out);
      } catch (...) {
        requests.ahead.pop_back();  // not sent: nothing in flight on `http`
        throw;
      }
    } catch (const std::exception&) {
      return;
    }
  }
}

}  // namespace

// Fetches one page, retrying what can succeed later; throws GaveUp or Stopped. The first of
// `requests.ahead`, if any, is the request already sent for this page; on return the queue
// holds the requests sent for the pages after it (send_ahead()).
static Page fetch_page(Fetcher::SourceState& src, const config::Entity& e, const RunState& run,
                       Requests& requests, ResponseReader& reader, Metrics& m,
                       const StopToken& stop, HttpResponse& last, bool after_full_page) {
  const auto& s = src.source;
  Backoff backoff(s.retry_initial, s.retry_max);
  Outgoing out = next_request(s, e, run);
  if (!requests.ahead.empty() && !(requests.ahead.front().out == out)) {
    requests.guessing = false;
    log::warn("fetcher.pipelining_off",
              "entity={} page={} reason={} action=one_request_at_a_time_for_this_run", e.name,
              run.page, log::q("the page asked ahead is not the next one (page size?)"));
    discard_ahead(src, e, requests, stop);
  }
  std::string failure;
  bool refreshed = false;
  for (std::int64_t attempt = 1; attempt <= s.retry_max_attempts; ++attempt) {
    notify::beat();  // the entity loop's heartbeat (fetcher/loop.cpp): one per attempt
    const bool sent = !requests.ahead.empty();
    if (!sent) {
      bool ok = true;
      auto throttled = src.limiter.acquire(stop, ok);
      m.throttled_ms += throttled.count();
      if (throttled.count() > 0)
        metrics::upstream_throttled_seconds(e.name).Increment(
            static_cast<double>(throttled.count()) / 1000.0);
      if (!ok) throw Stopped{};
    }
    std::optional<std::chrono::milliseconds> wait;
    try {
      HttpClient* http = nullptr;
      if (sent) {
        http = requests.ahead.front().http;  // its answer is this attempt's
        requests.ahead.pop_front();
      } else {
        http = &requests.idle();
        send(src, *http, out);
      }
      last = http->complete();
      count_response(e, m, last.status);
      if (last.status >= 200 && last.status < 300) {
        if (s.pipelining) send_ahead(src, e, run, last, after_full_page, requests, stop);
        return reader.read(last.body);
      }
      failure = fmt::format("HTTP {}", last.status);
      if (last.status == 401 && !refreshed && src.auth.refresh_after_401()) {
        refreshed = true;  // an expired token: get a new one and ask again at once
        ++m.retries;
        metrics::upstream_retries(e.name).Increment();
        log::info("fetcher.token_rejected", "entity={} page={}", e.name, run.page);
        discard_ahead(src, e, requests, stop);  // sent with the rejected token
        continue;
      }
      if (last.status == 429 || last.status == 503) {
        if (auto ra = retry_after(last)) {
          src.limiter.close_until(Clock::now() + *ra);  // the whole source pauses
          wait = std::chrono::milliseconds(0);
        }
      } else if (last.status < 500 && last.status != 408) {
        // 400, 401 again, 403, 404: asking again will not help; the operator must act.
        throw GaveUp(
            fmt::format("HTTP {} from {}: {}", last.status, out.url, last.body.substr(0, 200)));
      }
    } catch (const TransportError& err) {
      ++m.requests;
      metrics::upstream_requests(e.name, 0).Increment();
      if (stop.stop_requested()) throw Stopped{};
      failure = err.what();
    } catch (const BadResponse& err) {
      failure = err.what();  // malformed JSON, truncated body, GraphQL errors
    } catch (const Authenticator::AuthError& err) {
      failure = err.what();
    }
    // A failed page takes the requests sent after it along: it is asked again first, alone.
    discard_ahead(src, e, requests, stop);
    if (attempt == s.retry_max_attempts) break;
    ++m.retries;
    metrics::upstream_retries(e.name).Increment();
    auto delay = wait ? *wait : backoff.next();
    log::warn("fetcher.retry", "entity={} page={} attempt={} wait_ms={} reason={}", e.name,
              run.page, attempt, delay.count(), log::q(failure));
    if (notify::wait(stop, delay)) throw Stopped{};  // beats through a long backoff
  }
  throw GaveUp(
      fmt::format("page {} failed {} times; last: {}", run.page, s.retry_max_attempts, failure));
}

RunResult Fetcher::continue_run(const config::Entity& e, Checkpoint& cp, bool resumed) {
  auto& src = *sources_.at(e.source);
  auto& m = *metrics_.at(e.name);
  auto& run = *cp.current;
  RunResult result{false, run.run_id, run.mode, run.page, run.records, ""};
  Requests requests(src.source, stop_);
  ResponseReader reader(e.request.records, e.updated_at_path, e.request.pagination == "relay");
  auto started = Clock::now();
  Baseline base(m);
  // A resumed run says so: its previous process stopped or crashed mid-run.
  write_summary(config_, e, run, m, base, "running",
                resumed ? fmt::format("resumed at page {}", run.page) : "", false);
  auto last_summary = Clock::now();
  log::info("fetcher.run_started", "entity={} run_id={} mode={} since={} until={} page={}", e.name,
            run.run_id, mode_name(run.mode), run.since ? format_rfc3339(*run.since) : "-",
            run.until ? format_rfc3339(*run.until) : "-", run.page);
  // This thread fetches; the writer makes pages durable behind it (page_writer.hpp). `pos`
  // is where fetching stands; cp.current (the durable position) belongs to the writer until
  // finish() returns.
  RunState pos = run;
  bool reached_end = run.exhausted;  // crashed after its last page: only the end is left
  if (!reached_end) {
    PageWriter writer(config_, e, cp, m);
    bool after_full_page = false;  // the previous page of this process was full
    for (;;) {
      if (stop_.stop_requested()) break;
      HttpResponse response;
      Page page;
      try {
        page = fetch_page(src, e, pos, requests, reader, m, stop_, response, after_full_page);
      } catch (const Stopped&) {
        break;
      } catch (const GaveUp& err) {
        ++m.runs_failed;
        result.error = err.what();
        log::error("fetcher.run_failed", "entity={} run_id={} page={} error={}", e.name, pos.run_id,
                   pos.page, log::q(err.what()));
        break;
      }
      failpoint("fetcher.after_parse");  // tests: what was asked before this page is spooled
      if (page.replaced > 0) {
        // Bytes that are not UTF-8 became U+FFFD in this page's records (Postgres stores
        // nothing else). The body as received goes to the spool too: the stager quarantines
        // it, bytes and all, so nothing the upstream sent is lost.
        std::string kept = "(not written)";
        try {
          kept = spool::write_received(config_.spool_dir, spool_meta(e, pos), response.body)
                     .filename()
                     .string();
        } catch (const std::exception& err) {
          kept = fmt::format("(not written: {})", err.what());
        }
        log::warn("fetcher.invalid_utf8", "entity={} run_id={} page={} replaced={} received={}",
                  e.name, pos.run_id, pos.page, page.replaced, log::q(kept));
      }
      QueuedPage q{spool_meta(e, pos), {}, {}, pos};
      std::size_t bytes = 0;
      for (auto r : page.records) bytes += r.size();
      q.blob.reserve(bytes);
      for (auto r : page.records) {
        q.spans.emplace_back(q.blob.size(), r.size());
        q.blob.append(r);
      }
      // Where the next page starts, per pagination style.
      auto& next = q.after;
      auto n = static_cast<std::int64_t>(page.records.size());
      after_full_page = n >= e.request.page_size;
      auto [more, cursor] =
          next_position(e.request.pagination, page, response.header("link"), e.request.page_size);
      if (cursor) next.cursor = std::move(*cursor);
      ++next.page;
      next.records += n;
      next.exhausted = !more;
      if (page.newest && (!next.newest || *page.newest > *next.newest)) next.newest = page.newest;
      pos = next;
      if (!writer.push(std::move(q))) break;  // the writer failed: finish() reports why
      if (Clock::now() - last_summary >= std::chrono::minutes(1)) {
        write_summary(config_, e, pos, m, base, "running", "", false);  // the heartbeat
        last_summary = Clock::now();
      }
      if (!more) {
        reached_end = true;
        break;
      }
    }
    discard_ahead(src, e, requests, stop_);  // past the last page, or stopped
    try {
      writer.finish();
    } catch (const std::exception& err) {
      ++m.runs_failed;
      result.error = fmt::format("cannot make pages durable: {}", err.what());
      log::error("fetcher.run_failed", "entity={} run_id={} error={}", e.name, pos.run_id,
                 log::q(result.error));
      reached_end = false;
    }
  }
  result.pages = run.page;
  result.records = run.records;
  if (!reached_end) {
    // Stopped by SIGTERM or given up: either way this attempt ended; a later start resumes
    // the run (and its next summary says running again).
    write_summary(
        config_, e, run, m, base, "failed",
        result.error.empty()
            ? fmt::format("stopped at page {} by shutdown; the next start resumes it", run.page)
            : result.error,
        true);
    metrics::stage_runs("fetcher", e.name, "failed").Increment();
    return result;
  }
  // The end marker goes to the spool before the checkpoint forgets the run: a crash between
  // the two resumes the run, which ends again and writes the same marker again (harmless).
  failpoint("fetcher.before_run_end");
  spool::Meta end = spool_meta(e, run);
  end.pages = run.page;
  end.records = run.records;
  spool::write_run_end(config_.spool_dir, end);
  auto now = std::chrono::system_clock::now();
  if (run.newest && run.mode != Mode::repair && (!cp.watermark || *run.newest > *cp.watermark))
    cp.watermark = run.newest;
  // Before cp.current.reset(): `run` refers to it.
  write_summary(config_, e, run, m, base, "success", "", true);
  cp.last_run_id = run.run_id;
  cp.last_completed = now;
  if (run.mode == Mode::full) cp.last_full = now;
  cp.current.reset();
  save_checkpoint(config_.fetcher_state_dir, e.name, cp);
  ++m.runs_completed;
  result.complete = true;
  metrics::stage_runs("fetcher", e.name, "success").Increment();
  log::info("fetcher.run_completed",
            "entity={} run_id={} mode={} pages={} records={} requests={} retries={} "
            "throttled_ms={} ms={}",
            e.name, result.run_id, mode_name(result.mode), result.pages, result.records,
            m.requests.load(), m.retries.load(), m.throttled_ms.load(),
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
  return result;
}

RunResult Fetcher::run_entity(const config::Entity& e, const std::optional<RunRequest>& request) {
  auto cp = load_checkpoint(config_.fetcher_state_dir, e.name);
  if (cp.current) {
    auto resumed = continue_run(e, cp, true);
    if (!resumed.complete || !request) return resumed;
  }
  RunRequest want;
  if (request) {
    want = *request;
  } else {
    auto now = std::chrono::system_clock::now();
    bool full_due =
        e.full_every.count() > 0 && (!cp.last_full || now - *cp.last_full >= e.full_every);
    want.mode = full_due ? Mode::full : Mode::incremental;
  }
  RunState run;
  run.mode = want.mode;
  run.run_id = new_run_id(e, want.mode);
  run.started_at = std::chrono::system_clock::now();
  if (want.mode == Mode::incremental && cp.watermark) run.since = *cp.watermark - e.overlap;
  if (want.mode == Mode::repair) {
    run.since = want.from;
    run.until = want.to;
  }
  cp.current = run;
  save_checkpoint(config_.fetcher_state_dir, e.name, cp);
  return continue_run(e, cp, false);
}

}  // namespace ingestd::fetcher
