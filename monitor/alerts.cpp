// Conditions, the rate limit (AlertBook, rules in alerts.hpp) and delivery. Delivery is one
// thread with a bounded queue and one libcurl handle: the monitor loop only appends to the
// queue, so a webhook that hangs or answers 500 costs the loop nothing.
#include "monitor/alerts.hpp"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "core/backoff.hpp"
#include "core/config.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"

namespace ingestd::monitor {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
// At shutdown, a POST is not started with less time than this left before the deadline.
constexpr auto kShortest = 50ms;

// "45s", "12m", "3h 12m", "2d 4h": an operator reads these on a phone.
std::string human(std::chrono::seconds d) {
  auto s = std::max<std::int64_t>(d.count(), 0);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m", s / 60);
  if (s < 86400)
    return s % 3600 / 60 ? fmt::format("{}h {}m", s / 3600, s % 3600 / 60)
                         : fmt::format("{}h", s / 3600);
  return s % 86400 / 3600 ? fmt::format("{}d {}h", s / 86400, s % 86400 / 3600)
                          : fmt::format("{}d", s / 86400);
}

std::string human(SysTime from, SysTime to) {
  return human(std::chrono::duration_cast<std::chrono::seconds>(to - from));
}

// "2026-11-26T11:06:34Z": seconds are enough in a chat message.
std::string stamp(SysTime t) {
  return format_rfc3339(t).substr(0, 19) + "Z";
}

// An error summary can be a whole stack of messages; a chat line wants the first part.
std::string clip(std::string_view text, std::size_t max = 300) {
  std::string s(text.substr(0, std::min(text.size(), max)));
  std::replace(s.begin(), s.end(), '\n', ' ');
  return text.size() > max ? s + "…" : s;
}

std::string plural(std::int64_t n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

std::string run_failed_text(const std::string& stage, const StageState& st) {
  auto text = fmt::format("{} run {} failed: {}", stage, st.last_run_id,
                          st.last_error.empty() ? "(no error recorded)" : clip(st.last_error));
  if (st.failed_24h > 1) text += fmt::format(" ({} in 24h)", plural(st.failed_24h, "failed run"));
  return text;
}

std::string stale_text(const EntityState& e, double failing_below) {
  if (e.freshness_seconds < 0 || !e.fresh_as_of)
    return fmt::format("stale: never synced (freshness {:.0f}, alert below {:.0f})",
                       e.freshness_score, failing_below);
  return fmt::format(
      "stale: data is {} old (freshness {:.0f}, alert below {:.0f}); last success {}",
      human(std::chrono::seconds(static_cast<std::int64_t>(e.freshness_seconds))),
      e.freshness_score, failing_below, stamp(*e.fresh_as_of));
}

// What a recovery message says has ended.
std::string what_ended(const std::string& kind, const std::string& stage) {
  if (kind == "run_failed") return stage + " run failures";
  if (kind == "dead_rows") return "dead rows";
  if (kind == "stale") return "staleness";
  if (kind == "unreadable") return "table read errors";
  return kind;
}

bool is_event(const std::string& kind) {
  return kind == "new_placeholders";
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~CurlGlobal() { curl_global_cleanup(); }
};

// The webhook URL is a secret (Slack's carries its token in the path): logs name the host only.
std::string webhook_host(const std::string& url) {
  std::string host = "<webhook>";
  CURLU* u = curl_url();
  char* h = nullptr;
  if (u && curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK)
    host = h;
  curl_free(h);
  curl_url_cleanup(u);
  return host;
}

std::size_t keep_head(char* data, std::size_t size, std::size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  if (out->size() < 200) out->append(data, std::min(size * n, 200 - out->size()));
  return size * n;
}

const char* type_name(Message::Type t) {
  switch (t) {
    case Message::Type::alert:
      return "alert";
    case Message::Type::reminder:
      return "reminder";
    case Message::Type::recovery:
      return "recovery";
  }
  return "?";
}

}  // namespace

std::vector<Condition> conditions(const Snapshot& now, const Snapshot* previous,
                                  const config::Config& config) {
  std::vector<Condition> out;
  for (const auto& e : now.entities) {
    if (!e.error.empty()) {  // nothing else about it was read: zeros would raise false alarms
      out.push_back({e.entity, "unreadable", "",
                     fmt::format("the monitor cannot read its tables ({}): has `ingestd migrate` "
                                 "run since the entity was added?",
                                 clip(e.error))});
      continue;
    }
    for (const auto& [stage, st] : e.stages) {
      if (st.last_status == "failed")
        out.push_back({e.entity, "run_failed", stage, run_failed_text(stage, st)});
      else if (st.stale > 0)  // the contract: a run whose writer is gone counts as failed
        out.push_back(
            {e.entity, "run_failed", stage,
             fmt::format("{} not updated for over {} minutes (its process is gone?): "
                         "restart the {}; it closes such runs as failed",
                         plural(st.stale, stage + " run"), kStaleHeartbeat.count(), stage)});
    }
    if (e.dead > 0)
      out.push_back({e.entity, "dead_rows", "",
                     fmt::format("{} in stg_{} (failed reconciler.max_attempts times); after "
                                 "fixing the cause: `ingestd requeue --entity {} --dead`",
                                 plural(e.dead, "dead row"), e.entity, e.entity)});
    const EntityState* before = nullptr;
    if (previous)
      for (const auto& p : previous->entities)
        if (p.entity == e.entity) before = &p;
    if (before) {
      auto rise = std::max(e.placeholders_open - before->placeholders_open,
                           e.placeholders_created - before->placeholders_created);
      if (rise > 0)
        out.push_back(
            {e.entity, "new_placeholders", "",
             fmt::format("{} ({} open); review: `ingestd placeholders --entity {}`",
                         plural(rise, "new placeholder row"), e.placeholders_open, e.entity)});
    }
    if (e.freshness_score < config.monitor_failing_below)
      out.push_back({e.entity, "stale", "", stale_text(e, config.monitor_failing_below)});
  }
  return out;
}

std::string slack_json(const Message& m) {
  return "{\"text\": " + json_quote(m.text) + "}";
}

AlertBook::AlertBook(std::chrono::milliseconds min_interval, std::string host)
    : min_interval_(min_interval), host_(std::move(host)) {}

std::vector<Message> AlertBook::update(const std::vector<Condition>& present, SysTime now) {
  std::vector<Message> out;
  auto message = [&](Message::Type type, const Key& key, std::string text) {
    out.push_back({type, std::get<0>(key), std::get<1>(key), std::get<2>(key),
                   fmt::format("{} (host {})", text, host_)});
  };
  std::map<Key, const Condition*> seen;
  for (const auto& c : present) seen[{c.entity, c.kind, c.stage}] = &c;

  for (const auto& [key, c] : seen) {
    State& s = states_[key];
    if (s.last_message && now < *s.last_message) s.last_message = now;  // the clock stepped back
    bool quiet = !s.last_message || now - *s.last_message >= min_interval_;
    if (!s.present) {
      s.present = true;
      s.announced = false;
      s.since = now;
    }
    if (!quiet) {
      ++s.quiet_checks;
      ++suppressed_;
      continue;
    }
    auto label = is_event(c->kind) ? "NEW PLACEHOLDERS" : "FAILING";
    if (!s.announced || is_event(c->kind)) {
      message(Message::Type::alert, key,
              fmt::format("[ingestd] {} {}: {}", label, c->entity, c->text));
    } else {
      message(
          Message::Type::reminder, key,
          fmt::format("[ingestd] STILL FAILING {}: {} (since {}, {}; {} since the last message)",
                      c->entity, c->text, stamp(s.since), human(s.since, now),
                      plural(s.quiet_checks, "check")));
    }
    s.announced = true;
    s.last_message = now;
    s.quiet_checks = 0;
  }

  for (auto& [key, s] : states_) {
    if (!s.present || seen.count(key)) continue;
    s.present = false;
    s.quiet_checks = 0;
    if (!s.announced || is_event(std::get<1>(key)))
      continue;  // nothing was said: nothing to take back
    message(Message::Type::recovery, key,
            fmt::format("[ingestd] RESOLVED {}: {} resolved after {}", std::get<0>(key),
                        what_ended(std::get<1>(key), std::get<2>(key)), human(s.since, now)));
    s.announced = false;
    s.last_message = now;
  }
  return out;
}

struct Alerter::Impl {
  explicit Impl(const config::Config& c)
      : config(c),
        url(c.alerts_webhook_url),
        timeout(c.alerts_timeout > 0ms ? c.alerts_timeout : 5s),
        book(c.alerts_min_interval, host_name()) {}

  void evaluate(const Snapshot& snapshot);
  void run();
  void deliver(CURL* curl, const Message& m);
  // Returns the HTTP status, or 0 with `error` set when no response came back.
  long post(CURL* curl, const std::string& body, std::chrono::milliseconds budget,
            std::string& error, std::string& reply);

  const config::Config config;  // a copy: the caller's may not outlive the Alerter
  const std::string url;
  const std::chrono::milliseconds timeout;
  std::string host;  // for logs, instead of the URL

  // Guarded by mu, like everything below: evaluate() and counts() may run on other threads.
  AlertBook book;
  std::map<std::string, EntityState> placeholder_base;  // as of the last message, per entity

  mutable std::mutex mu;
  std::condition_variable wake;
  std::deque<Message> queue;
  bool stopping = false;
  Clock::time_point deadline{};
  Counts counts;
  std::thread worker;
};

Alerter::Alerter(const config::Config& config) : impl_(std::make_unique<Impl>(config)) {
  static CurlGlobal curl_global;
  auto& im = *impl_;
  if (im.url.empty()) {
    log::info("alerts.disabled", "reason=\"monitor.alerts.webhook_url is not set\"");
    return;
  }
  im.host = webhook_host(im.url);
  log::info("alerts.enabled", "webhook_host={} min_interval_s={} timeout_ms={}", im.host,
            std::chrono::duration_cast<std::chrono::seconds>(config.alerts_min_interval).count(),
            im.timeout.count());
  im.worker = std::thread([&im] { im.run(); });
}

Alerter::~Alerter() {
  auto& im = *impl_;
  if (!im.worker.joinable()) return;
  {
    std::lock_guard lock(im.mu);
    im.stopping = true;
    im.deadline = Clock::now() + im.timeout;
  }
  im.wake.notify_all();
  im.worker.join();
}

void Alerter::evaluate(const Snapshot& snapshot) {
  impl_->evaluate(snapshot);
}

Alerter::Counts Alerter::counts() const {
  std::lock_guard lock(impl_->mu);
  auto c = impl_->counts;
  c.suppressed = impl_->book.suppressed();
  return c;
}

void Alerter::Impl::evaluate(const Snapshot& snapshot) {
  std::lock_guard lock(mu);  // held for microseconds: the worker never holds it over the network
  // new_placeholders compares with the counts as of the entity's last placeholder message,
  // so rises suppressed by the rate limit add up into the next message instead of vanishing.
  Snapshot base;
  for (const auto& e : snapshot.entities)
    if (auto it = placeholder_base.find(e.entity); it != placeholder_base.end())
      base.entities.push_back(it->second);
  auto found = conditions(snapshot, &base, config);
  SysTime now =
      snapshot.taken_at == SysTime{} ? std::chrono::system_clock::now() : snapshot.taken_at;
  auto messages = book.update(found, now);
  for (const auto& e : snapshot.entities) {
    bool rose = std::any_of(found.begin(), found.end(), [&](const Condition& c) {
      return c.entity == e.entity && c.kind == "new_placeholders";
    });
    bool told = std::any_of(messages.begin(), messages.end(), [&](const Message& m) {
      return m.entity == e.entity && m.kind == "new_placeholders";
    });
    if (!rose || told) placeholder_base[e.entity] = e;
  }
  for (auto& m : messages) {
    auto& n = m.type == Message::Type::alert      ? counts.alerts
              : m.type == Message::Type::reminder ? counts.reminders
                                                  : counts.recoveries;
    ++n;
    log::info("alerts.message", "type={} entity={} kind={} stage={} delivery={} text={}",
              type_name(m.type), m.entity, m.kind, m.stage.empty() ? "-" : m.stage,
              url.empty() ? "none" : "queued", log::q(m.text));
    if (url.empty()) continue;
    if (queue.size() >= kQueueLimit) {
      const auto& old = queue.front();
      log::warn("alerts.dropped", "reason=queue_full limit={} type={} entity={} kind={}",
                kQueueLimit, type_name(old.type), old.entity, old.kind);
      ++counts.dropped;
      queue.pop_front();
    }
    queue.push_back(std::move(m));
  }
  if (!queue.empty()) wake.notify_one();
}

void Alerter::Impl::run() {
  CURL* curl = curl_easy_init();
  for (;;) {
    Message m;
    {
      std::unique_lock lock(mu);
      wake.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) break;
      if (stopping && deadline - Clock::now() < kShortest) {
        log::warn("alerts.dropped", "reason=shutdown count={} webhook_host={}", queue.size(), host);
        counts.dropped += static_cast<std::int64_t>(queue.size());
        queue.clear();
        break;
      }
      m = std::move(queue.front());
      queue.pop_front();
    }
    if (curl) {
      deliver(curl, m);
    } else {
      std::lock_guard lock(mu);
      ++counts.failed;
      log::error("alerts.undelivered", "reason=\"curl_easy_init failed\" entity={}", m.entity);
    }
  }
  if (curl) curl_easy_cleanup(curl);
}

void Alerter::Impl::deliver(CURL* curl, const Message& m) {
  const auto body = slack_json(m);
  Backoff backoff(1s, 10s);
  std::string error;
  long status = 0;
  for (int attempt = 1;; ++attempt) {
    auto budget = timeout;
    {
      std::lock_guard lock(mu);
      // At shutdown every transfer ends by the deadline: the destructor waits at most timeout.
      if (stopping) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left < kShortest) {
          if (attempt > 1) break;
          queue.push_front(m);  // never tried: the run loop drops it with the rest
          return;
        }
        budget = std::min(budget, left);
      }
    }
    std::string reply;
    error.clear();
    status = post(curl, body, budget, error, reply);
    if (status >= 200 && status < 300) {
      std::lock_guard lock(mu);
      ++counts.sent;
      log::info("alerts.sent", "type={} entity={} kind={} webhook_host={} status={}",
                type_name(m.type), m.entity, m.kind, host, status);
      return;
    }
    bool retry = status == 0 || status == 408 || status == 429 || status >= 500;
    log::warn("alerts.post_failed", "webhook_host={} attempt={}/{} status={} error={} reply={}",
              host, attempt, kAttempts, status, log::q(error), log::q(reply));
    if (!retry || attempt >= kAttempts) break;
    std::unique_lock lock(mu);
    if (wake.wait_for(lock, backoff.next(), [&] { return stopping; })) break;
  }
  std::lock_guard lock(mu);
  ++counts.failed;
  log::error("alerts.undelivered", "type={} entity={} kind={} webhook_host={} status={}",
             type_name(m.type), m.entity, m.kind, host, status);
}

long Alerter::Impl::post(CURL* curl, const std::string& body, std::chrono::milliseconds budget,
                         std::string& error, std::string& reply) {
  curl_easy_reset(curl);  // keeps the connection cache
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");  // no 1 s wait for "100 Continue"
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_head);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(budget.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(budget.count()));
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "ingestd/0.1");
  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  long status = 0;
  if (rc != CURLE_OK) {
    error = curl_easy_strerror(rc);  // the bare reason: curl's error buffer would quote the URL
    return 0;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

}  // namespace ingestd::monitor
