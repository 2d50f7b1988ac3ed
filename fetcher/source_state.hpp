// What the entities of one source share: the rate limit and the credentials (internal).
#pragma once

#include "core/config.hpp"
#include "fetcher/auth.hpp"
#include "fetcher/fetcher.hpp"
#include "fetcher/rate_limiter.hpp"

namespace ingestd::fetcher {

struct Fetcher::SourceState {
  explicit SourceState(const config::Source& s)
      : source(s), limiter(s.rate_per_second, s.rate_burst), auth(s.auth) {}
  const config::Source& source;
  RateLimiter limiter;
  Authenticator auth;
};

}  // namespace ingestd::fetcher
