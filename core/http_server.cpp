#include "core/http_server.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/config.hpp"
#include "core/log.hpp"

namespace ingestd::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

using Routes = std::map<std::string, Handler, std::less<>>;

// Prometheus keeps its connection open between scrapes (default every minute): an idle
// connection is kept a while longer than that, then closed; the scraper simply reconnects.
constexpr auto kIdleTimeout = std::chrono::seconds(150);
constexpr std::uint64_t kBodyLimit = 64 * 1024;  // GET bodies are empty; anything big is abuse

bhttp::response<bhttp::string_body> respond(const bhttp::request<bhttp::string_body>& req,
                                            const Routes& routes) {
  std::string_view path(req.target().data(), req.target().size());
  path = path.substr(0, path.find('?'));
  const bool head = req.method() == bhttp::verb::head;
  Response r;
  auto route = routes.find(path);
  if (route == routes.end()) {
    r = {404, "text/plain; charset=utf-8", "not found\n"};
  } else if (req.method() != bhttp::verb::get && !head) {
    r = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
  } else {
    try {
      r = route->second();
    } catch (const std::exception& e) {
      r = {500, "text/plain; charset=utf-8", log::redact(e.what()) + "\n"};
    } catch (...) {
      r = {500, "text/plain; charset=utf-8", "unknown error\n"};
    }
  }
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), req.version()};
  res.set(bhttp::field::server, "ingestd");
  res.set(bhttp::field::content_type, r.content_type);
  if (r.status == 405) res.set(bhttp::field::allow, "GET, HEAD");
  res.keep_alive(req.keep_alive());
  if (head) {
    res.content_length(r.body.size());  // what GET would send, without the body
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  return res;
}

// One connection: read a request, answer it, repeat while the client keeps it alive. Owned
// by its pending operation (shared_from_this); the io_context's destruction frees the rest.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const Routes& routes) : stream_(std::move(socket)), routes_(routes) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    stream_.expires_after(kIdleTimeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

 private:
  void on_read(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream) return close();
    if (ec && ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category()) {
      // A malformed request: say so, then close (the stream's state is unknown).
      res_ = {bhttp::status::bad_request, 11};
      res_.set(bhttp::field::server, "ingestd");
      res_.body() = "bad request\n";
      res_.keep_alive(false);
      res_.prepare_payload();
      return write();
    }
    if (ec) return;  // timeout, reset: drop the connection
    res_ = respond(parser_->get(), routes_);
    write();
  }

  void write() {
    stream_.expires_after(kIdleTimeout);
    bhttp::async_write(stream_, res_,
                       [self = shared_from_this()](beast::error_code ec, std::size_t) {
                         if (ec) return;
                         if (self->res_.need_eof()) return self->close();
                         self->read();
                       });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  const Routes& routes_;
};

}  // namespace

struct Server::Impl {
  Routes routes;
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  asio::steady_timer pause{ioc};
  std::thread thread;
  unsigned short port = 0;

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) {
        std::make_shared<Session>(std::move(socket), routes)->read();
        return accept();
      }
      // Out of descriptors or similar: wait a little instead of spinning on the error.
      log::warn("http.accept_failed", "error={}", log::q(ec.message()));
      pause.expires_after(std::chrono::milliseconds(100));
      pause.async_wait([this](beast::error_code e) {
        if (!e) accept();
      });
    });
  }
};

Server::Server(std::string_view listen, std::map<std::string, Handler> routes)
    : impl_(std::make_unique<Impl>()) {
  auto where = config::parse_listen(listen);
  if (!where) throw std::runtime_error(fmt::format("cannot listen on '{}': not host:port", listen));
  for (auto& [path, handler] : routes) impl_->routes.emplace(path, std::move(handler));
  beast::error_code ec;
  auto address = asio::ip::make_address(where->host, ec);
  tcp::endpoint endpoint{address, where->port};
  auto& acceptor = impl_->acceptor;
  if (!ec) acceptor.open(endpoint.protocol(), ec);
  // SO_REUSEADDR: a restart binds at once despite connections in TIME_WAIT (it does not let
  // two servers share a port on Linux).
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) impl_->port = acceptor.local_endpoint(ec).port();
  if (ec) throw std::runtime_error(fmt::format("cannot listen on {}: {}", listen, ec.message()));
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] {
    try {
      impl->ioc.run();
    } catch (const std::exception& e) {
      log::error("http.crashed", "error={}", log::q(e.what()));
    }
  });
}

Server::~Server() {
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

unsigned short Server::port() const {
  return impl_->port;
}

}  // namespace ingestd::http
