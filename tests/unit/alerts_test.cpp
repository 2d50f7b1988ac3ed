// Protects the monitor's alerts: which conditions a snapshot raises and in what words, the
// rate limit (a storm or a flapping condition sends one alert and one recovery, reminders once
// per min_interval), and delivery to a real HTTP webhook on 127.0.0.1: retried then counted
// on 500, never blocking evaluate() or shutdown on a webhook that hangs, nothing sent without
// a URL, and the URL (a secret) never in the log. No database: snapshots are built by hand.
#include <doctest/doctest.h>

#include <algorithm>
#include <sstream>

#include "core/config.hpp"
#include "core/log.hpp"
#include "monitor/alerts.hpp"
#include "tests/support/support.hpp"
#include "tests/support/webhook_receiver.hpp"

using namespace ingestd;
using namespace ingestd::monitor;
using namespace std::chrono_literals;
using ingestd::test::WebhookReceiver;

namespace {

const SysTime t0 = *parse_rfc3339("2026-11-26T10:00:00Z");

EntityState healthy(const std::string& name) {
  EntityState e;
  e.entity = name;
  e.reconciled = true;
  for (auto stage : {"fetcher", "stager", "reconciler"}) e.stages[stage].last_status = "success";
  e.fresh_as_of = t0 - 5min;
  e.freshness_seconds = 300;
  e.freshness_score = 100;
  return e;
}

EntityState failing(const std::string& name, const std::string& error = "upstream 503") {
  auto e = healthy(name);
  auto& st = e.stages["reconciler"];
  st.last_status = "failed";
  st.last_run_id = "db1:42:7";
  st.last_error = error;
  st.failed_24h = 3;
  return e;
}

Snapshot snap(std::vector<EntityState> entities, SysTime at = std::chrono::system_clock::now()) {
  Snapshot s;
  s.taken_at = at;
  s.entities = std::move(entities);
  return s;
}

config::Config cfg(const std::string& url = "", std::chrono::milliseconds timeout = 2s) {
  config::Config c;
  c.monitor_failing_below = 20;
  c.alerts_webhook_url = url;
  c.alerts_min_interval = 10min;
  c.alerts_timeout = timeout;
  return c;
}

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<Condition> of_kind(const std::vector<Condition>& cs, const std::string& kind) {
  std::vector<Condition> out;
  std::copy_if(cs.begin(), cs.end(), std::back_inserter(out),
               [&](const Condition& c) { return c.kind == kind; });
  return out;
}

Condition cond(const std::string& kind = "run_failed", const std::string& text = "boom") {
  return {"timeline_entries", kind, kind == "run_failed" ? "reconciler" : "", text};
}

}  // namespace

TEST_CASE("a healthy snapshot raises no condition") {
  auto now = snap({healthy("users"), healthy("timeline_entries")});
  CHECK(conditions(now, &now, cfg()).empty());
}

TEST_CASE("conditions name the failed stage with its error and the dead rows with requeue") {
  auto e = failing("timeline_entries", "duplicate key \"x\"\nDETAIL: more");
  e.dead = 4;
  auto cs = conditions(snap({e, healthy("users")}), nullptr, cfg());
  REQUIRE(cs.size() == 2);
  CHECK(cs[0].entity == "timeline_entries");
  CHECK(cs[0].kind == "run_failed");
  CHECK(cs[0].stage == "reconciler");
  CHECK(cs[0].text ==
        "reconciler run db1:42:7 failed: duplicate key \"x\" DETAIL: more (3 failed runs in 24h)");
  CHECK(cs[1].kind == "dead_rows");
  CHECK(has(cs[1].text, "4 dead rows in stg_timeline_entries"));
  CHECK(has(cs[1].text, "`ingestd requeue --entity timeline_entries --dead`"));
}

TEST_CASE("a run whose writer is gone counts as failed and an unreadable entity only says so") {
  auto gone = healthy("users");
  gone.stages["stager"].stale = 1;
  auto broken = healthy("clients");
  broken.error = "relation \"clients\" does not exist";
  broken.freshness_score = 0;  // not read: must not also raise stale
  broken.dead = 0;
  auto cs = conditions(snap({gone, broken}), nullptr, cfg());
  REQUIRE(cs.size() == 2);
  CHECK(cs[0].kind == "run_failed");
  CHECK(cs[0].stage == "stager");
  CHECK(has(cs[0].text, "1 stager run not updated for over 5 minutes"));
  CHECK(cs[1].kind == "unreadable");
  CHECK(has(cs[1].text, "cannot read its tables (relation \"clients\" does not exist)"));
}

TEST_CASE("stale says the age in human units and the last success - or never synced") {
  auto old = healthy("users");
  old.freshness_seconds = 3 * 3600 + 12 * 60;
  old.freshness_score = 12;
  auto never = healthy("clients");
  never.fresh_as_of.reset();
  never.freshness_seconds = -1;
  never.freshness_score = 0;
  auto borderline = healthy("pianos");
  borderline.freshness_score = 20;  // not below monitor.failing_below
  auto cs = conditions(snap({old, never, borderline}), nullptr, cfg());
  REQUIRE(cs.size() == 2);
  CHECK(cs[0].kind == "stale");
  CHECK(cs[0].text ==
        "stale: data is 3h 12m old (freshness 12, alert below 20); last success "
        "2026-11-26T09:55:00Z");
  CHECK(cs[1].text == "stale: never synced (freshness 0, alert below 20)");
}

TEST_CASE("new placeholders are a condition only when the counts rose since the previous") {
  auto before = healthy("pianos");
  before.placeholders_open = 2;
  before.placeholders_created = 10;
  auto after = before;
  auto prev = snap({before});
  CHECK(of_kind(conditions(snap({after}), nullptr, cfg()), "new_placeholders").empty());
  CHECK(of_kind(conditions(snap({after}), &prev, cfg()), "new_placeholders").empty());
  after.placeholders_created = 13;  // three made - one already filled
  after.placeholders_open = 4;
  auto cs = of_kind(conditions(snap({after}), &prev, cfg()), "new_placeholders");
  REQUIRE(cs.size() == 1);
  CHECK(cs[0].text ==
        "3 new placeholder rows (4 open); review: `ingestd placeholders --entity pianos`");
  after.placeholders_created = 0;  // only the open count is known
  after.placeholders_open = 3;
  cs = of_kind(conditions(snap({after}), &prev, cfg()), "new_placeholders");
  REQUIRE(cs.size() == 1);
  CHECK(has(cs[0].text, "1 new placeholder row (3 open)"));
}

TEST_CASE("a storm of evaluations sends one alert then one reminder per interval") {
  AlertBook book(10min, "db1");
  auto first = book.update({cond()}, t0);
  REQUIRE(first.size() == 1);
  CHECK(first[0].type == Message::Type::alert);
  CHECK(first[0].text == "[ingestd] FAILING timeline_entries: boom (host db1)");
  for (int i = 1; i <= 49; ++i) CHECK(book.update({cond()}, t0 + i * 1s).empty());
  CHECK(book.suppressed() == 49);
  CHECK(book.update({cond()}, t0 + 9min).empty());
  auto reminder = book.update({cond("run_failed", "boom again")}, t0 + 10min);
  REQUIRE(reminder.size() == 1);
  CHECK(reminder[0].type == Message::Type::reminder);
  CHECK(reminder[0].text ==
        "[ingestd] STILL FAILING timeline_entries: boom again (since 2026-11-26T10:00:00Z, 10m; "
        "50 checks since the last message) (host db1)");
  CHECK(book.update({cond()}, t0 + 15min).empty());
  auto resolved = book.update({}, t0 + 22min);
  REQUIRE(resolved.size() == 1);
  CHECK(resolved[0].type == Message::Type::recovery);
  CHECK(
      resolved[0].text ==
      "[ingestd] RESOLVED timeline_entries: reconciler run failures resolved after 22m (host db1)");
  CHECK(book.update({}, t0 + 23min).empty());
}

TEST_CASE("a condition flapping faster than min_interval sends one alert and one recovery") {
  AlertBook book(10min, "db1");
  int alerts = 0, recoveries = 0;
  // Present on even minutes, gone on odd ones, for 9 minutes.
  for (int m = 0; m < 9; ++m)
    for (const auto& msg :
         book.update(m % 2 ? std::vector<Condition>{} : std::vector{cond()}, t0 + m * 1min)) {
      alerts += msg.type == Message::Type::alert;
      recoveries += msg.type == Message::Type::recovery;
    }
  CHECK(alerts == 1);
  CHECK(recoveries == 1);
  // Back at minute 8, it is still there at 11: min_interval after the recovery (minute 1) it is
  // announced again, as an alert - the recovery had told the operator it was over.
  CHECK(book.update({cond()}, t0 + 10min).empty());
  auto again = book.update({cond()}, t0 + 11min);
  REQUIRE(again.size() == 1);
  CHECK(again[0].type == Message::Type::alert);
  // An episode that was never announced ends in silence.
  AlertBook quiet(10min, "db1");
  CHECK(quiet.update({cond()}, t0).size() == 1);
  CHECK(quiet.update({}, t0 + 1min).size() == 1);
  CHECK(quiet.update({cond()}, t0 + 2min).empty());
  CHECK(quiet.update({}, t0 + 3min).empty());
}

TEST_CASE("conditions are rate-limited each on its own identity") {
  AlertBook book(10min, "db1");
  auto fetch = cond();
  fetch.stage = "fetcher";
  CHECK(book.update({cond()}, t0).size() == 1);
  CHECK(book.update({cond(), fetch, cond("dead_rows")}, t0 + 1s).size() == 2);
  // The new condition of another entity is not held back by this one's messages.
  auto other = cond();
  other.entity = "users";
  CHECK(book.update({cond(), fetch, cond("dead_rows"), other}, t0 + 2s).size() == 1);
}

TEST_CASE("a clock that steps back re-anchors the interval instead of silencing a condition") {
  AlertBook book(10min, "db1");
  CHECK(book.update({cond()}, t0).size() == 1);
  CHECK(book.update({cond()}, t0 - 1h).empty());
  CHECK(book.update({cond()}, t0 - 1h + 10min).size() == 1);
}

TEST_CASE("the webhook body is Slack JSON with the text escaped") {
  Message m{Message::Type::alert, "e", "run_failed", "stager",
            "[ingestd] FAILING e: \"quoted\" back\\slash\nnew line \x01 (host db1)"};
  CHECK(slack_json(m) ==
        "{\"text\": \"[ingestd] FAILING e: \\\"quoted\\\" back\\\\slash\\nnew line \\u0001 (host "
        "db1)\"}");
}

TEST_CASE("no webhook configured: nothing is sent and the counts still track") {
  WebhookReceiver receiver;  // running but not configured
  {
    Alerter alerter(cfg());
    for (int i = 0; i < 50; ++i) alerter.evaluate(snap({failing("timeline_entries")}));
    alerter.evaluate(snap({healthy("timeline_entries")}));
    auto c = alerter.counts();
    CHECK(c.alerts == 1);
    CHECK(c.suppressed == 49);
    CHECK(c.recoveries == 1);
    CHECK(c.sent == 0);
    CHECK(c.failed == 0);
  }
  CHECK(receiver.count() == 0);
}

TEST_CASE("a storm reaches the webhook as one alert and its end as one recovery") {
  WebhookReceiver receiver;
  {
    Alerter alerter(cfg(receiver.url()));
    for (int i = 0; i < 50; ++i)
      alerter.evaluate(snap({failing("timeline_entries"), healthy("users")}));
    REQUIRE(receiver.wait_for(1, 30s));
    alerter.evaluate(snap({healthy("timeline_entries"), healthy("users")}));
    REQUIRE(receiver.wait_for(2, 30s));
    CHECK(test::eventually([&] { return alerter.counts().sent == 2; }, 30s));
    CHECK(alerter.counts().suppressed == 49);
  }  // the Alerter is gone: nothing more can arrive
  auto got = receiver.requests();
  REQUIRE(got.size() == 2);
  CHECK(got[0].method == "POST");
  CHECK(got[0].target == "/hook");
  CHECK(got[0].content_type == "application/json");
  CHECK(got[0].body.rfind("{\"text\": \"[ingestd] FAILING timeline_entries: reconciler run", 0) ==
        0);
  CHECK(got[1].body.rfind("{\"text\": \"[ingestd] RESOLVED timeline_entries: reconciler run "
                          "failures resolved after",
                          0) == 0);
}

TEST_CASE("new placeholders suppressed by the rate limit add up into the next message") {
  WebhookReceiver receiver;
  auto at = [](int open, SysTime t) {
    auto e = healthy("pianos");
    e.placeholders_open = open;
    return snap({e}, t);
  };
  {
    Alerter alerter(cfg(receiver.url()));
    alerter.evaluate(at(0, t0));         // the baseline: nothing is known to be new
    alerter.evaluate(at(3, t0 + 1min));  // 3 new: told
    alerter.evaluate(at(5, t0 + 2min));  // 2 more: held back
    alerter.evaluate(at(5, t0 + 3min));
    alerter.evaluate(at(5, t0 + 11min));  // told: the 2 held back
    alerter.evaluate(at(5, t0 + 12min));  // nothing new, and no "resolved" for an event
    REQUIRE(receiver.wait_for(2, 30s));
    CHECK(test::eventually([&] { return alerter.counts().sent == 2; }, 30s));
  }
  auto got = receiver.requests();
  REQUIRE(got.size() == 2);
  CHECK(has(got[0].body, "[ingestd] NEW PLACEHOLDERS pianos: 3 new placeholder rows (3 open)"));
  CHECK(has(got[1].body, "[ingestd] NEW PLACEHOLDERS pianos: 2 new placeholder rows (5 open)"));
}

TEST_CASE("a webhook answering 500 is retried then counted failed while evaluate goes on") {
  WebhookReceiver receiver(WebhookReceiver::Mode::fail);
  Alerter alerter(cfg(receiver.url()));
  alerter.evaluate(snap({failing("timeline_entries")}));
  for (int i = 0; i < 20; ++i) alerter.evaluate(snap({failing("timeline_entries")}));
  REQUIRE(test::eventually([&] { return alerter.counts().failed == 1; }, 60s));
  CHECK(receiver.count() == static_cast<std::size_t>(Alerter::kAttempts));
  CHECK(alerter.counts().sent == 0);
  receiver.set_mode(WebhookReceiver::Mode::ok);  // the webhook is back: the recovery goes out
  alerter.evaluate(snap({healthy("timeline_entries")}));
  CHECK(test::eventually([&] { return alerter.counts().sent == 1; }, 30s));
  CHECK(has(receiver.requests().back().body, "RESOLVED timeline_entries"));
}

TEST_CASE("a webhook that never answers blocks neither evaluate nor shutdown") {
  // Would hang rather than fail if either blocked on the network.
  WebhookReceiver receiver(WebhookReceiver::Mode::hang);
  std::vector<EntityState> many;
  for (int i = 0; i < 100; ++i) many.push_back(failing("e" + std::to_string(i)));
  {
    Alerter alerter(cfg(receiver.url(), 300ms));
    alerter.evaluate(snap(many));  // 100 alerts: the queue keeps the newest 64
    REQUIRE(receiver.wait_for(1, 30s));
    for (int i = 0; i < 50; ++i) alerter.evaluate(snap(many));
    auto c = alerter.counts();
    CHECK(c.alerts == 100);
    CHECK(c.dropped == 100 - static_cast<std::int64_t>(Alerter::kQueueLimit));
    CHECK(c.sent == 0);
  }
  receiver.release();
}

TEST_CASE("the webhook URL never appears in the logs") {
  std::optional<test::LogCapture> capture(std::in_place);
  const std::string path = "/services/T0SECRET/B0SECRET/xoxb-not-in-logs";
  {
    WebhookReceiver failing_hook(WebhookReceiver::Mode::fail);
    Alerter alerter(cfg(failing_hook.url(path)));
    alerter.evaluate(snap({failing("timeline_entries")}));
    REQUIRE(test::eventually([&] { return alerter.counts().failed == 1; }, 60s));
  }
  std::string refused_url;
  {
    WebhookReceiver gone;
    refused_url = gone.url(path);
  }  // closed: connection refused
  {
    Alerter alerter(cfg(refused_url));
    alerter.evaluate(snap({failing("timeline_entries")}));
    REQUIRE(test::eventually([&] { return alerter.counts().failed == 1; }, 60s));
  }
  {
    WebhookReceiver hanging(WebhookReceiver::Mode::hang);
    std::vector<EntityState> many;
    for (int i = 0; i < 70; ++i) many.push_back(failing("e" + std::to_string(i)));
    {
      Alerter alerter(cfg(hanging.url(path), 200ms));
      alerter.evaluate(snap(many));
    }
    hanging.release();
  }
  auto text = capture->text();
  capture.reset();  // the alerters are gone: nothing more to capture
  CHECK(has(text, "event=alerts.enabled webhook_host=127.0.0.1"));
  CHECK(has(text, "event=alerts.post_failed webhook_host=127.0.0.1"));
  CHECK(has(text, "event=alerts.dropped reason=queue_full"));
  CHECK(has(text, "event=alerts.dropped reason=shutdown"));
  CHECK_FALSE(has(text, "T0SECRET"));
  CHECK_FALSE(has(text, "xoxb-not-in-logs"));
  CHECK_FALSE(has(text, "***"));  // not merely redacted: never written
}
