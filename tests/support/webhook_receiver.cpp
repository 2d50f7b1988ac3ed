#include "tests/support/webhook_receiver.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <thread>

namespace ingestd::test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, WebhookReceiver::Server& server)
      : stream_(std::move(socket)), server_(server) {}
  void read();
  void close() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.socket().close(ec);
  }

 private:
  void on_read(beast::error_code ec, std::size_t);
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  WebhookReceiver::Server& server_;
};

}  // namespace

struct WebhookReceiver::Server {
  explicit Server(WebhookReceiver& o) : owner(o) {}
  WebhookReceiver& owner;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::vector<std::shared_ptr<Session>> held;  // io thread only
  std::thread thread;

  // Sessions reach the receiver's private side through the Server (its friend).
  void record(Request r) { owner.record(std::move(r)); }
  [[nodiscard]] Mode mode() const { return owner.mode(); }

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) return;  // closed
      std::make_shared<Session>(std::move(socket), *this)->read();
      accept();
    });
  }
};

namespace {

void Session::read() {
  req_ = {};
  http::async_read(stream_, buffer_, req_,
                   beast::bind_front_handler(&Session::on_read, shared_from_this()));
}

void Session::on_read(beast::error_code ec, std::size_t) {
  if (ec) return close();
  auto field = [&](http::field f) {
    auto v = req_[f];
    return std::string(v.data(), v.size());
  };
  server_.record({std::string(req_.method_string()), std::string(req_.target()),
                  field(http::field::content_type), req_.body()});
  auto mode = server_.mode();
  if (mode == WebhookReceiver::Mode::hang) {
    server_.held.push_back(shared_from_this());  // never answered; closed by release()
    return;
  }
  bool ok = mode == WebhookReceiver::Mode::ok;
  res_ = {ok ? http::status::ok : http::status::internal_server_error, req_.version()};
  res_.set(http::field::content_type, "text/plain");
  res_.body() = ok ? "ok" : "internal error";
  res_.keep_alive(req_.keep_alive());
  res_.prepare_payload();
  http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code e, std::size_t) {
    if (e || !self->res_.keep_alive()) return self->close();
    self->read();
  });
}

}  // namespace

WebhookReceiver::WebhookReceiver(Mode mode)
    : mode_(mode), server_(std::make_unique<Server>(*this)) {
  auto& s = *server_;
  tcp::endpoint endpoint{net::ip::make_address("127.0.0.1"), 0};
  s.acceptor.open(endpoint.protocol());
  s.acceptor.bind(endpoint);
  s.acceptor.listen();
  port_ = s.acceptor.local_endpoint().port();
  s.accept();
  s.thread = std::thread([&s] { s.ioc.run(); });
}

WebhookReceiver::~WebhookReceiver() {
  // Stopping abandons the pending accept and reads; destroying the Server then closes the
  // acceptor and every socket, held ones included.
  server_->ioc.stop();
  server_->thread.join();
}

std::string WebhookReceiver::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void WebhookReceiver::set_mode(Mode mode) {
  std::lock_guard lock(mu_);
  mode_ = mode;
}

void WebhookReceiver::release() {
  set_mode(Mode::ok);
  auto& s = *server_;
  net::post(s.ioc, [&s] {
    for (auto& session : s.held) session->close();
    s.held.clear();
  });
}

WebhookReceiver::Mode WebhookReceiver::mode() const {
  std::lock_guard lock(mu_);
  return mode_;
}

void WebhookReceiver::record(Request r) {
  {
    std::lock_guard lock(mu_);
    requests_.push_back(std::move(r));
  }
  arrived_.notify_all();
}

std::vector<WebhookReceiver::Request> WebhookReceiver::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

std::size_t WebhookReceiver::count() const {
  std::lock_guard lock(mu_);
  return requests_.size();
}

bool WebhookReceiver::wait_for(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return arrived_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

}  // namespace ingestd::test
