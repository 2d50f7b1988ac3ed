// A webhook endpoint for the alert tests: a real HTTP/1.1 server on 127.0.0.1 (port 0, on
// its own thread) that records every request, and answers 200, or 500, or nothing at all
// (it reads the request and holds the connection open until release()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ingestd::test {

class WebhookReceiver {
 public:
  enum class Mode { ok, fail, hang };
  struct Request {
    std::string method, target, content_type, body;
  };

  explicit WebhookReceiver(Mode mode = Mode::ok);
  ~WebhookReceiver();  // closes every connection, held ones included
  WebhookReceiver(const WebhookReceiver&) = delete;
  WebhookReceiver& operator=(const WebhookReceiver&) = delete;

  [[nodiscard]] int port() const { return port_; }
  // "http://127.0.0.1:<port><path>"
  [[nodiscard]] std::string url(const std::string& path = "/hook") const;

  void set_mode(Mode mode);
  // Closes the connections held by Mode::hang (their clients see a reset) and answers 200
  // from now on.
  void release();

  [[nodiscard]] std::vector<Request> requests() const;
  [[nodiscard]] std::size_t count() const;
  // True once at least `n` requests arrived (false after `timeout`).
  bool wait_for(std::size_t n, std::chrono::milliseconds timeout) const;

  struct Server;  // the asio side, in webhook_receiver.cpp

 private:
  friend struct Server;
  void record(Request r);
  [[nodiscard]] Mode mode() const;

  mutable std::mutex mu_;
  mutable std::condition_variable arrived_;
  std::vector<Request> requests_;
  Mode mode_;
  int port_ = 0;
  std::unique_ptr<Server> server_;
};

}  // namespace ingestd::test
