#include "fetcher/auth.hpp"

#include <simdjson.h>

#include <fmt/format.h>

#include "core/log.hpp"

namespace ingestd::fetcher {

std::vector<std::string> Authenticator::headers(HttpClient& http) {
  using Kind = config::Auth::Kind;
  switch (auth_.kind) {
    case Kind::none:
      return {};
    case Kind::bearer:
      return {"Authorization: Bearer " + auth_.bearer_token};
    case Kind::api_key:
      return {auth_.api_key_header + ": " + auth_.api_key};
    case Kind::oauth2: {
      std::lock_guard lock(mu_);
      if (token_.empty() || std::chrono::steady_clock::now() >= refresh_at_) fetch_token(http);
      return {"Authorization: Bearer " + token_};
    }
  }
  return {};
}

bool Authenticator::refresh_after_401() {
  if (auth_.kind != config::Auth::Kind::oauth2) return false;
  std::lock_guard lock(mu_);
  token_.clear();
  return true;
}

void Authenticator::fetch_token(HttpClient& http) {
  std::string body = fmt::format("grant_type=client_credentials&client_id={}&client_secret={}",
                                 url_encode(auth_.client_id), url_encode(auth_.client_secret));
  if (!auth_.scope.empty()) body += "&scope=" + url_encode(auth_.scope);
  HttpResponse r;
  try {
    r = http.post(auth_.token_url, body,
                  {"Content-Type: application/x-www-form-urlencoded", "Accept: application/json"});
  } catch (const TransportError& e) {
    throw AuthError(fmt::format("token endpoint unreachable: {}", e.what()));
  }
  if (r.status != 200) throw AuthError(fmt::format("token endpoint answered HTTP {}", r.status));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view token;
  std::int64_t ttl = 3600;
  if (parser.parse(r.body).get(doc) || doc["access_token"].get_string().get(token) || token.empty())
    throw AuthError("token endpoint answered without an access_token");
  if (auto e = doc["expires_in"].get_int64(); !e.error()) ttl = e.value();
  token_ = std::string(token);
  log::add_secret(token_);  // never in a log line, even inside an echoed request
  // Refresh at 90 % of the lifetime, so a page never starts with a token about to expire.
  refresh_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(ttl * 900);
  log::info("fetcher.token_refreshed", "expires_in_s={}", ttl);
}

}  // namespace ingestd::fetcher
