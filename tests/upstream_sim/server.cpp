// One Listener accepts; one Session per connection reads a request, asks the App, writes the
// reply and reads the next (keep-alive). Each session runs on its own strand, so its handlers
// never run concurrently even with several io_context threads. The shape follows Beast's
// http_server_async example; what is added is "Expect: 100-continue", the "slow" delay and the
// "truncate" fault.
#include "server.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <memory>
#include <optional>

#include <fmt/format.h>

namespace upstream_sim {

namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A connection idle this long is closed, so a client that vanished does not hold a session.
constexpr auto kIdleTimeout = std::chrono::seconds(60);

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, App& app)
      : stream_(std::move(socket)), timer_(stream_.get_executor()), app_(app) {}

  void run() {
    // Start on the session's strand: every later handler then runs on it too.
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::read, shared_from_this()));
  }

 private:
  void read() {
    parser_.emplace();  // a parser reads one message only
    stream_.expires_after(kIdleTimeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void on_header(beast::error_code ec, std::size_t) {
    if (ec == http::error::end_of_stream) return close();
    if (ec) return;  // timeout, reset or a request Beast could not parse: drop the connection
    // libcurl sends "Expect: 100-continue" with larger POST bodies and then waits a second
    // for this interim answer before sending the body.
    auto expect = parser_->get()[http::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      http::async_write(stream_, continue_,
                        beast::bind_front_handler(&Session::read_body, shared_from_this()));
      return;
    }
    read_body({}, 0);
  }

  void read_body(beast::error_code ec, std::size_t) {
    if (ec) return;
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec) return;
    req_ = parser_->release();
    reply_ = app_.handle(req_);
    reply_.res.version(req_.version());
    reply_.res.keep_alive(req_.keep_alive());  // "truncate" too: a real cut is not announced
    reply_.res.prepare_payload();
    if (reply_.delay.count() > 0) {  // "slow" fault: the App is not locked while we wait
      timer_.expires_after(reply_.delay);
      timer_.async_wait(beast::bind_front_handler(&Session::send, shared_from_this()));
    } else {
      send({});
    }
  }

  void send(beast::error_code) {
    if (reply_.data) app_.answered();
    stream_.expires_after(kIdleTimeout);
    if (reply_.truncate) return send_truncated();
    http::async_write(stream_, reply_.res,
                      beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  // "truncate" fault: a complete head announcing the full Content-Length, half the body, then
  // the connection closes. Written by hand because Beast never sends a short message.
  void send_truncated() {
    const auto& res = reply_.res;
    raw_ = fmt::format("HTTP/1.1 {} {}\r\n", res.result_int(),
                       std::string_view(res.reason().data(), res.reason().size()));
    for (const auto& field : res)
      raw_ += fmt::format("{}: {}\r\n",
                          std::string_view(field.name_string().data(), field.name_string().size()),
                          std::string_view(field.value().data(), field.value().size()));
    raw_ += "\r\n";
    raw_ += res.body().substr(0, res.body().size() / 2);
    net::async_write(
        stream_, net::buffer(raw_),
        [self = shared_from_this()](beast::error_code, std::size_t) { self->close(); });
  }

  void on_write(beast::error_code ec, std::size_t) {
    if (ec) return;
    if (!reply_.res.keep_alive()) return close();
    read();
  }

  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

  beast::tcp_stream stream_;
  net::steady_timer timer_;
  beast::flat_buffer buffer_;
  App& app_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::empty_body> continue_{http::status::continue_, 11};
  Request req_;
  Reply reply_;
  std::string raw_;
};

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(net::io_context& ioc, const tcp::endpoint& endpoint, App& app)
      : ioc_(ioc), acceptor_(net::make_strand(ioc)), app_(app) {
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen(net::socket_base::max_listen_connections);
  }

  [[nodiscard]] unsigned short port() const { return acceptor_.local_endpoint().port(); }

  void accept() {
    // Each connection gets its own strand.
    acceptor_.async_accept(net::make_strand(ioc_),
                           beast::bind_front_handler(&Listener::on_accept, shared_from_this()));
  }

 private:
  void on_accept(beast::error_code ec, tcp::socket socket) {
    if (!ec) std::make_shared<Session>(std::move(socket), app_)->run();
    accept();  // an error on one connection (e.g. too many open files) must not stop accepting
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  App& app_;
};

}  // namespace

unsigned short start_server(net::io_context& ioc, unsigned short port, App& app) {
  auto listener =
      std::make_shared<Listener>(ioc, tcp::endpoint{net::ip::make_address("127.0.0.1"), port}, app);
  listener->accept();  // the pending accept keeps the listener alive
  return listener->port();
}

}  // namespace upstream_sim
