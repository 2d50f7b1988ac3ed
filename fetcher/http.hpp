// HTTP for the fetcher: one libcurl easy handle per thread (connections are reused), a
// whole-request timeout, TLS verification on unless the config turns it off, and a stop
// token that aborts a transfer still running 3 s after shutdown was requested.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace ingestd {
class StopToken;
}

namespace ingestd::fetcher {

struct HttpResponse {
  long status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names lowercased; last value wins
  [[nodiscard]] std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A transfer that produced no HTTP response: connection refused, timeout, reset, aborted.
struct TransportError : std::runtime_error {
  TransportError(const std::string& what, bool timeout)
      : std::runtime_error(what), timed_out(timeout) {}
  bool timed_out;
};

class HttpClient {
 public:
  HttpClient(std::chrono::milliseconds timeout, bool tls_verify, const StopToken& stop);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Throws TransportError; any HTTP status is a response.
  HttpResponse get(const std::string& url, const std::vector<std::string>& headers);
  HttpResponse post(const std::string& url, const std::string& body,
                    const std::vector<std::string>& headers);

 private:
  HttpResponse perform(const std::string& url, const std::string* body,
                       const std::vector<std::string>& headers);
  void* curl_;
  std::chrono::milliseconds timeout_;
  bool tls_verify_;
  const StopToken& stop_;
};

// application/x-www-form-urlencoded / query-string escaping.
[[nodiscard]] std::string url_encode(std::string_view s);

}  // namespace ingestd::fetcher
