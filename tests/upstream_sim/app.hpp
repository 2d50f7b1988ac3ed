// The simulator's behaviour, independent of sockets: App::handle turns one HTTP request into
// one reply. server.cpp only moves bytes; everything a fetcher can observe is decided here.
//
//   app.cpp       routing, faults, request counters
//   data_api.cpp  POST /graphql (Relay and page-number styles) and GET /rest/<entity>
//   auth.cpp      --auth modes and POST /oauth/token
//   control.cpp   /control/* for tests: mutate, ids, stats, requests, faults, reset, churn,
//                 dump
#pragma once

#include <boost/beast/http.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "dataset.hpp"
#include "text.hpp"

namespace upstream_sim {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

struct Auth {
  enum class Kind { none, bearer, apikey, oauth2 } kind = Kind::none;
  std::string a;  // bearer: token; apikey: header name; oauth2: client id
  std::string b;  // apikey: header value; oauth2: client secret
};
// "none", "bearer:TOKEN", "apikey:HEADER:VALUE", "oauth2:CLIENT_ID:CLIENT_SECRET".
[[nodiscard]] std::optional<Auth> parse_auth(std::string_view spec);

struct Fault {
  std::string kind;  // 429 500 503 slow truncate malformed graphql_error expire_tokens none
  int count = 1;     // applies to the next `count` data requests
  std::optional<int> retry_after;  // 429, 503: Retry-After seconds
  int delay_ms = 0;                // slow
};
// Command-line form "KIND:COUNT[:PARAM]"; PARAM is retry_after (429, 503) or delay_ms (slow).
[[nodiscard]] std::optional<Fault> parse_fault(std::string_view spec);
[[nodiscard]] bool known_fault_kind(std::string_view kind);

// --fault-rate and /control/fault_rate: each data request without a queued fault fails with
// probability percent/100, as one of `kinds` drawn at random (429 carries Retry-After:
// retry_after, slow waits delay_ms).
struct RandomFaults {
  double percent = 0;
  std::vector<std::string> kinds = {"429",      "500",       "503",          "slow",
                                    "truncate", "malformed", "graphql_error"};
  int retry_after = 1;
  int delay_ms = 3000;
};

struct Options {
  std::uint64_t seed = 42;
  int size = 100;
  Auth auth;
  int token_ttl_s = 3600;
  std::vector<Fault> faults;  // queued before the first request
  double bad_percent = 0;     // --bad-records: share of the initial records rendered broken
  std::vector<std::string> bad_kinds;  // --bad-kinds: only these (bad_records.hpp); empty: all
  double churn_per_second = 0;         // --churn: changes per second from the start (see Churn)
  RandomFaults random_faults;          // --fault-rate
};

// The background changes of /control/churn and --churn: `per_second` random records change,
// each an update (60 %), an add (20 %) or a delete (20 %), the entity drawn in proportion to
// its size, until `max` more changes were made (0: no limit) or the rate is set to 0.
struct Churn {
  double per_second = 0;
  std::int64_t max = 0;
  std::int64_t updated = 0, added = 0, deleted = 0;
  std::chrono::steady_clock::time_point since;  // when the rate was set
  std::int64_t done_before = 0;                 // changes made before that
  [[nodiscard]] std::int64_t done() const { return updated + added + deleted; }
};

// What the transport must do besides sending `res`.
struct Reply {
  Response res;
  std::chrono::milliseconds delay{0};  // "slow": wait this long before answering
  bool truncate = false;               // "truncate": send the head and half the body, then close
  bool data = false;  // a data request: counted in flight until the transport calls answered()
};

class App {
 public:
  explicit App(Options options);
  // Called once the port is known: REST Link headers carry absolute URLs.
  void set_port(unsigned short port) { port_ = port; }
  // Thread-safe: one mutex around everything. Requests are tiny, so obviously-correct beats
  // concurrent here; the transport waits out "slow" delays outside the lock.
  [[nodiscard]] Reply handle(const Request& req);
  // The transport starts writing a data request's answer (after a "slow" delay): it no longer
  // counts as in flight. /control/stats reports the most data requests in flight at once
  // ("in_flight_max"): how many a client keeps at the upstream together.
  void answered();

 private:
  static constexpr std::size_t kLogCap = 100'000;  // a long demo must not grow without bound
  struct Logged {
    std::int64_t t_ms;
    std::string path;
    int status;
  };

  Reply data_request(const Request& req, std::string_view path, std::string_view query);
  Response graphql(const Request& req);
  Response rest(const Request& req, std::string_view path, std::string_view query);
  // nullopt when the request carries valid credentials for --auth.
  std::optional<Response> check_auth(const Request& req);
  Response token_endpoint(const Request& req);
  Response control(const Request& req, std::string_view path, std::string_view query);
  Response control_mutate(const Request& req);
  Response control_faults(const Request& req);
  Response control_churn(const Request& req);
  Response control_fault_rate(const Request& req);
  std::string fault_rate_json() const;
  void set_churn(double per_second, std::int64_t max);  // mu_ held
  void churn_loop(const std::stop_token& stop);
  void churn_one();  // mu_ held
  std::string churn_json() const;
  std::string stats_json() const;
  std::string requests_json() const;
  std::optional<Fault> take_fault();

  std::mutex mu_;
  Options opt_;
  Dataset data_;
  unsigned short port_ = 0;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::map<std::string, std::chrono::steady_clock::time_point> tokens_;  // token -> expiry
  std::mt19937_64 token_rng_{std::random_device{}()};  // tokens need not be reproducible
  std::deque<Fault> faults_;
  std::mt19937_64 fault_rng_;
  std::map<std::string, std::int64_t> random_faults_;  // by kind, since the last reset
  std::map<int, std::int64_t> by_status_;              // data requests only
  std::int64_t token_requests_ = 0;
  std::int64_t in_flight_ = 0;
  std::int64_t in_flight_max_ = 0;
  std::deque<Logged> log_;  // data requests only, the latest kLogCap
  Churn churn_;
  std::mt19937_64 churn_rng_;
  std::jthread churn_thread_;  // last: stopped and joined before anything it uses is destroyed
};

// Helpers shared by the handler files.
[[nodiscard]] Response json_response(http::status status, std::string body);
// {"error": message}: the body of every non-GraphQL error.
[[nodiscard]] Response error_response(http::status status, std::string_view message);
// The query part of a target split from its path: "/rest/x?a=1" -> {"/rest/x", "a=1"}.
[[nodiscard]] std::pair<std::string_view, std::string_view> split_target(std::string_view target);

}  // namespace upstream_sim
