// A small HTTP/1.1 server for /metrics, /health and /ready: every long-lived stage serves its
// own process metrics with it, the monitor its database-derived views. GET and HEAD on exact
// paths (a query string is ignored), keep-alive, 404 for other paths, 405 for other methods,
// 500 with the message when a handler throws.
//
// One thread serves every connection and runs the handlers, so a handler must answer from
// memory (a cached snapshot, the process registry) and never wait on the database.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace ingestd::http {

struct Response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using Handler = std::function<Response()>;

class Server {
 public:
  // `listen` as config::parse_listen accepts it ("127.0.0.1:9464", "[::1]:0", "localhost:0");
  // port 0 picks a free port (see port()). Throws std::runtime_error naming the address when it
  // is malformed or cannot be bound. Serving starts at once.
  Server(std::string_view listen, std::map<std::string, Handler> routes);
  // Closes the listening socket and every connection, and joins the thread: returns within
  // milliseconds, even with clients connected.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] unsigned short port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ingestd::http
