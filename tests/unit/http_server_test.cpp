// Protects core/http_server.hpp, the server behind every /metrics, /health and /ready: GET and
// HEAD on exact paths with the query string ignored, 404 and 405 otherwise, a throwing handler
// as 500 with its message, keep-alive (Prometheus reuses its connection), a bind failure that
// names the address, and a destructor that returns while a client is still connected.
#include <doctest/doctest.h>

#include <optional>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/http_server.hpp"

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

struct Reply {
  unsigned status = 0;
  std::string body;
  std::string content_type, content_length, allow;
};

class Client {
 public:
  explicit Client(unsigned short port) : socket_(ioc_) {
    socket_.connect({asio::ip::make_address("127.0.0.1"), port});
  }
  Reply send(bhttp::verb method, const std::string& target) {
    bhttp::request<bhttp::empty_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    bhttp::write(socket_, req);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.skip(method == bhttp::verb::head);  // a HEAD answer has no body to read
    bhttp::read(socket_, buffer_, parser);
    const auto& res = parser.get();
    return {res.result_int(), res.body(), std::string(res[bhttp::field::content_type]),
            std::string(res[bhttp::field::content_length]), std::string(res[bhttp::field::allow])};
  }
  // True when the server closed the connection.
  bool closed() {
    char byte;
    boost::system::error_code ec;
    socket_.read_some(asio::buffer(&byte, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

 private:
  asio::io_context ioc_;
  tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

std::map<std::string, ingestd::http::Handler> routes() {
  return {
      {"/metrics",
       [] {
         return ingestd::http::Response{200, "text/plain", "m 1\n"};
       }},
      {"/health",
       [] {
         return ingestd::http::Response{503, "application/json", "{\"status\":\"failing\"}"};
       }},
      {"/boom", []() -> ingestd::http::Response { throw std::runtime_error("snapshot missing"); }}};
}

}  // namespace

TEST_CASE("the http server answers GET and HEAD on its routes and 404 or 405 otherwise") {
  ingestd::http::Server server("127.0.0.1:0", routes());
  REQUIRE(server.port() != 0);
  Client c(server.port());
  auto r = c.send(bhttp::verb::get, "/metrics");
  CHECK(r.status == 200);
  CHECK(r.body == "m 1\n");
  CHECK(r.content_type == "text/plain");
  r = c.send(bhttp::verb::get, "/metrics?name[]=x");  // query strings are ignored
  CHECK(r.status == 200);
  r = c.send(bhttp::verb::head, "/metrics");
  CHECK(r.status == 200);
  CHECK(r.content_length == "4");  // what GET would send
  r = c.send(bhttp::verb::get, "/health");
  CHECK(r.status == 503);
  CHECK(r.body == "{\"status\":\"failing\"}");
  CHECK(r.content_type == "application/json");
  r = c.send(bhttp::verb::get, "/metrics/");
  CHECK(r.status == 404);
  r = c.send(bhttp::verb::post, "/metrics");
  CHECK(r.status == 405);
  CHECK(r.allow == "GET, HEAD");
}

TEST_CASE("a handler that throws gives 500 with its message and the server keeps serving") {
  ingestd::http::Server server("127.0.0.1:0", routes());
  Client c(server.port());
  auto r = c.send(bhttp::verb::get, "/boom");
  CHECK(r.status == 500);
  CHECK(r.body.find("snapshot missing") != std::string::npos);
  CHECK(c.send(bhttp::verb::get, "/metrics").status == 200);  // same connection
}

TEST_CASE("several clients keep their connections open at once") {
  ingestd::http::Server server("127.0.0.1:0", routes());
  Client a(server.port()), b(server.port());
  for (int i = 0; i < 3; ++i) {
    CHECK(a.send(bhttp::verb::get, "/metrics").status == 200);
    CHECK(b.send(bhttp::verb::get, "/health").status == 503);
  }
}

TEST_CASE("a port already in use is an error that names the address") {
  ingestd::http::Server first("127.0.0.1:0", routes());
  auto address = "127.0.0.1:" + std::to_string(first.port());
  std::string message;
  try {
    ingestd::http::Server second(address, routes());
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  CHECK(message.find(address) != std::string::npos);
  CHECK_THROWS_AS(ingestd::http::Server("nowhere:80", routes()), std::runtime_error);
}

TEST_CASE("the server stops while a client is connected and closes the connection") {
  std::optional<ingestd::http::Server> server;
  server.emplace("127.0.0.1:0", routes());
  Client c(server->port());
  CHECK(c.send(bhttp::verb::get, "/metrics").status == 200);
  server.reset();  // returns although the client holds its connection open
  CHECK(c.closed());
}
