// Credentials for one source's requests. OAuth2 client-credentials tokens are cached,
// refreshed before they expire (at 90 % of their lifetime) and when the server answers 401.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "fetcher/http.hpp"

namespace ingestd::fetcher {

class Authenticator {
 public:
  explicit Authenticator(const config::Auth& auth) : auth_(auth) {}

  // The headers to send; may fetch a token (through `http`). Throws AuthError.
  std::vector<std::string> headers(HttpClient& http);
  // The server refused our credentials (401): drop a cached token so the next call gets one.
  // Returns false when there is nothing to refresh (a static credential is simply wrong).
  bool refresh_after_401();

  struct AuthError : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

 private:
  void fetch_token(HttpClient& http);

  const config::Auth& auth_;
  std::mutex mu_;
  std::string token_;
  std::chrono::steady_clock::time_point refresh_at_{};
};

}  // namespace ingestd::fetcher
