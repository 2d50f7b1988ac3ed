// Routing, queued faults and the request counters. Read this first: handle() shows every
// endpoint, and data_request() shows the order a data request goes through (fault, auth,
// answer, count).
#include <fmt/format.h>

#include "app.hpp"

namespace upstream_sim {

namespace {
std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

// Splits "a:b:c" at the first `parts - 1` colons; the last part keeps any further colons.
std::vector<std::string_view> split(std::string_view s, std::size_t parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    auto colon = s.find(':');
    if (colon == std::string_view::npos) break;
    out.push_back(s.substr(0, colon));
    s = s.substr(colon + 1);
  }
  out.push_back(s);
  return out;
}

// The answer of a fault that replaces the real one.
std::optional<Response> fault_response(const Fault& f) {
  std::optional<Response> res;
  if (f.kind == "429") {
    res = error_response(http::status::too_many_requests, "rate limit exceeded (simulated)");
  } else if (f.kind == "500") {
    res = error_response(http::status::internal_server_error, "internal error (simulated)");
  } else if (f.kind == "503") {
    res = error_response(http::status::service_unavailable, "unavailable (simulated)");
  } else if (f.kind == "malformed") {
    // What a misconfigured proxy returns: status 200, JSON content type, HTML body.
    res = json_response(http::status::ok, "<html><body>502 Bad Gateway</body></html>\n");
  } else if (f.kind == "graphql_error") {
    res = json_response(http::status::ok, R"({"errors":[{"message":"simulated"}],"data":null})");
  }
  if (res && f.retry_after) res->set(http::field::retry_after, std::to_string(*f.retry_after));
  return res;
}
}  // namespace

std::optional<Auth> parse_auth(std::string_view spec) {
  if (spec == "none") return Auth{};
  auto kind = spec.substr(0, spec.find(':'));
  if (kind == "bearer") {
    auto p = split(spec, 2);
    if (p.size() == 2 && !p[1].empty()) return Auth{Auth::Kind::bearer, std::string(p[1]), ""};
  } else if (kind == "apikey" || kind == "oauth2") {
    auto p = split(spec, 3);
    if (p.size() == 3 && !p[1].empty() && !p[2].empty())
      return Auth{kind == "apikey" ? Auth::Kind::apikey : Auth::Kind::oauth2, std::string(p[1]),
                  std::string(p[2])};
  }
  return std::nullopt;
}

bool known_fault_kind(std::string_view kind) {
  for (std::string_view k : {"429", "500", "503", "slow", "truncate", "malformed", "graphql_error",
                             "expire_tokens", "none"})
    if (k == kind) return true;
  return false;
}

std::optional<Fault> parse_fault(std::string_view spec) {
  auto p = split(spec, 3);
  if (p.size() < 2 || !known_fault_kind(p[0])) return std::nullopt;
  auto count = parse_int(p[1]);
  if (!count || *count < 1 || *count > 1'000'000) return std::nullopt;
  Fault f{std::string(p[0]), static_cast<int>(*count)};
  if (p.size() == 3) {
    auto param = parse_int(p[2]);
    if (!param || *param < 0 || *param > 3'600'000) return std::nullopt;
    if (f.kind == "slow")
      f.delay_ms = static_cast<int>(*param);
    else if (f.kind == "429" || f.kind == "503")
      f.retry_after = static_cast<int>(*param);
    else
      return std::nullopt;  // a parameter this kind does not take is a typo
  }
  return f;
}

std::pair<std::string_view, std::string_view> split_target(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) return {target, {}};
  return {target.substr(0, q), target.substr(q + 1)};
}

Response json_response(http::status status, std::string body) {
  Response res{status, 11};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::server, "upstream_sim");
  res.body() = std::move(body);
  return res;
}

Response error_response(http::status status, std::string_view message) {
  return json_response(status, fmt::format(R"({{"error":{}}})", json_quote(message)));
}

App::App(Options options)
    : opt_(std::move(options)),
      data_(opt_.seed, opt_.size, opt_.bad_percent, opt_.bad_kinds),
      fault_rng_(opt_.seed ^ 0x6661756c74ULL),
      churn_rng_(opt_.seed ^ 0x636875726eULL) {
  for (const auto& f : opt_.faults)
    if (f.kind != "expire_tokens") faults_.push_back(f);  // no token exists yet to expire
  if (opt_.churn_per_second > 0) set_churn(opt_.churn_per_second, 0);
}

// ---- Churn ---------------------------------------------------------------------------------

void App::set_churn(double per_second, std::int64_t max) {
  churn_.per_second = per_second;
  churn_.max = max;
  churn_.since = std::chrono::steady_clock::now();
  churn_.done_before = churn_.done();
  if (per_second > 0 && !churn_thread_.joinable())
    churn_thread_ = std::jthread([this](const std::stop_token& stop) { churn_loop(stop); });
}

// Wakes every 20 ms and makes the changes due by then, so the rate holds on average whatever
// the scheduling; each change takes the same lock as a request, so a listing never sees half
// of one.
void App::churn_loop(const std::stop_token& stop) {
  using namespace std::chrono;
  while (!stop.stop_requested()) {
    std::this_thread::sleep_for(milliseconds(20));
    std::lock_guard lock(mu_);
    if (churn_.per_second <= 0) continue;
    double elapsed = duration<double>(steady_clock::now() - churn_.since).count();
    auto due = churn_.done_before + static_cast<std::int64_t>(churn_.per_second * elapsed);
    if (churn_.max > 0) due = std::min(due, churn_.done_before + churn_.max);
    while (churn_.done() < due) churn_one();
  }
}

void App::churn_one() {
  auto pick_entity = [&] {
    auto n = data_.total();
    auto at = n == 0 ? 0 : churn_rng_() % n;
    for (Entity e : kEntities) {
      if (at < data_.count(e)) return e;
      at -= data_.count(e);
    }
    return Entity::clients;
  };
  Entity e = pick_entity();
  auto op = churn_rng_() % 100;
  if (op < 60 && data_.count(e) > 0) {
    (void)data_.update_at(e, churn_rng_());
    ++churn_.updated;
  } else if (op < 80 || data_.count(e) <= 1) {  // never empty an entity
    (void)data_.add(e, 1);
    ++churn_.added;
  } else {
    (void)data_.remove_at(e, churn_rng_());
    ++churn_.deleted;
  }
}

std::string App::churn_json() const {
  return fmt::format(
      R"({{"per_second":{},"max":{},"updated":{},"added":{},"deleted":{},"records":{}}})",
      churn_.per_second, churn_.max, churn_.updated, churn_.added, churn_.deleted, data_.total());
}

Reply App::handle(const Request& req) {
  std::lock_guard lock(mu_);
  auto [path, query] = split_target(sv(req.target()));
  if (path == "/graphql" || path.starts_with("/rest/")) return data_request(req, path, query);
  if (path == "/oauth/token") {
    ++token_requests_;  // counted apart: tests check how often a fetcher asks for tokens
    return {token_endpoint(req)};
  }
  if (path.starts_with("/control/")) return {control(req, path, query)};
  return {error_response(http::status::not_found, fmt::format("no route for {}", path))};
}

void App::answered() {
  std::lock_guard lock(mu_);
  --in_flight_;
}

// Faults come first, like a rate limiter or a proxy in front of the real service: a 429 does
// not care whether the credentials were good.
Reply App::data_request(const Request& req, std::string_view path, std::string_view query) {
  using namespace std::chrono;
  auto t_ms = duration_cast<milliseconds>(steady_clock::now() - started_).count();
  Reply reply;
  std::optional<Fault> fault = take_fault();
  if (auto replaced = fault ? fault_response(*fault) : std::nullopt) {
    reply.res = std::move(*replaced);
  } else {
    if (auto denied = check_auth(req))
      reply.res = std::move(*denied);
    else
      reply.res = path == "/graphql" ? graphql(req) : rest(req, path, query);
    if (fault && fault->kind == "slow") reply.delay = milliseconds(fault->delay_ms);
    if (fault && fault->kind == "truncate") reply.truncate = true;
  }
  reply.data = true;
  in_flight_max_ = std::max(in_flight_max_, ++in_flight_);
  int status = reply.res.result_int();
  ++by_status_[status];
  log_.push_back({t_ms, std::string(path), status});
  if (log_.size() > kLogCap) log_.pop_front();
  return reply;
}

std::optional<Fault> App::take_fault() {
  const auto& rf = opt_.random_faults;
  if (faults_.empty() && rf.percent > 0 && !rf.kinds.empty() &&
      static_cast<double>(fault_rng_() % 1'000'000) < rf.percent * 10'000) {
    Fault f{rf.kinds[fault_rng_() % rf.kinds.size()]};
    if (f.kind == "429") f.retry_after = rf.retry_after;
    if (f.kind == "slow") f.delay_ms = rf.delay_ms;
    ++random_faults_[f.kind];
    return f;
  }
  if (faults_.empty()) return std::nullopt;
  Fault f = faults_.front();
  if (--faults_.front().count == 0) faults_.pop_front();
  return f;
}

}  // namespace upstream_sim
