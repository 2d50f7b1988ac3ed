// HTTP for the fetcher: one libcurl easy handle per client (connections are reused), a
// whole-request timeout, TLS verification on unless the config turns it off, and a stop
// token that aborts a transfer still running 3 s after shutdown was requested. A request can
// be sent and its response collected later (start/complete), so that the upstream prepares
// the next page while the caller works on the previous one (fetcher/README.md, pipelining).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
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
  // `share_with`: this client's transfers and the other's progress together (whichever of
  // them waits in complete() moves all), over one connection cache; several requests can then
  // be in flight at once, one per client (fetcher/run.cpp, requests_in_flight).
  HttpClient(std::chrono::milliseconds timeout, bool tls_verify, const StopToken& stop,
             const HttpClient* share_with = nullptr);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Throws TransportError; any HTTP status is a response.
  HttpResponse get(const std::string& url, const std::vector<std::string>& headers);
  HttpResponse post(const std::string& url, const std::string& body,
                    const std::vector<std::string>& headers);

  // Sends a request (GET, or POST when `body` is set) without waiting for the answer: on a
  // kept-alive connection the request is written before start() returns; on a new one only
  // the connection has begun (and goes on while this client or one sharing with it waits in
  // complete()). One request at a time per client. complete() waits for its answer, at most
  // the timeout counted from when complete() is called: TransportError or any HTTP status.
  // abort() drops it (its connection closes).
  void start(const std::string& url, const std::optional<std::string>& body,
             const std::vector<std::string>& headers);
  // `by`: give up at that time if it comes before the timeout (several answers waited for
  // in turn under one deadline).
  HttpResponse complete(std::optional<std::chrono::steady_clock::time_point> by = std::nullopt);
  void abort() noexcept;
  [[nodiscard]] bool busy() const { return busy_; }

 private:
  void* curl_;
  struct Multi;
  std::shared_ptr<Multi> multi_;  // shared by the clients created with share_with
  bool busy_ = false;
  struct Pending;
  std::unique_ptr<Pending> pending_;  // the request in flight and what it received
  std::chrono::milliseconds timeout_;
  bool tls_verify_;
  const StopToken& stop_;
};

// application/x-www-form-urlencoded / query-string escaping.
[[nodiscard]] std::string url_encode(std::string_view s);

}  // namespace ingestd::fetcher
