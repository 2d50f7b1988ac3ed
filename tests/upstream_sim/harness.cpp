#include "harness.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#ifndef UPSTREAM_SIM_BINARY
#error "UPSTREAM_SIM_BINARY must name the built upstream_sim"
#endif

namespace sim_test {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using namespace std::chrono;

// ---- Sim -----------------------------------------------------------------------------------

Sim::Sim(const std::vector<std::string>& args) {
  std::vector<std::string> argv_s = {UPSTREAM_SIM_BINARY, "--port", "0", "--threads", "2"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    // The test runner's signal mask must not reach the simulator (SIGTERM must work).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::dup2(fds[1], STDOUT_FILENO);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  stdout_fd_ = fds[0];

  // Read the first line, byte by byte, until the deadline.
  std::string line;
  auto deadline = steady_clock::now() + seconds(5);
  while (line.empty() || line.back() != '\n') {
    auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
    pollfd p{stdout_fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    char c;
    if (::read(stdout_fd_, &c, 1) != 1) break;
    line += c;
  }
  const std::string prefix = "listening 127.0.0.1:";
  REQUIRE_MESSAGE(line.starts_with(prefix), "upstream_sim printed: ", line);
  port_ = static_cast<unsigned short>(std::stoi(line.substr(prefix.size())));
}

Sim::~Sim() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

void Sim::signal(int sig) const {
  ::kill(pid_, sig);
}

std::optional<int> Sim::wait(milliseconds timeout) {
  auto deadline = steady_clock::now() + timeout;
  while (!status_) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return status_;
}

// ---- Client --------------------------------------------------------------------------------

struct Client::Impl {
  net::io_context ioc;
  tcp::socket socket{ioc};
  beast::flat_buffer buffer;
};

Client::Client(unsigned short port) : impl_(std::make_unique<Impl>()), port_(port) {}
Client::~Client() = default;

std::string Response::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

Response Client::get(const std::string& target, const Headers& headers) {
  return request("GET", target, "", headers, "");
}

Response Client::post(const std::string& target, const std::string& body, const Headers& headers,
                      const std::string& content_type) {
  return request("POST", target, body, headers, content_type);
}

Response Client::request(const std::string& method, const std::string& target,
                         const std::string& body, const Headers& headers,
                         const std::string& content_type) {
  auto& s = impl_->socket;
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, fmt::format("127.0.0.1:{}", port_));
  req.keep_alive(true);
  for (const auto& [name, value] : headers) req.set(name, value);
  if (!body.empty() || method == "POST") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
  }
  req.prepare_payload();

  // Write on the open connection; if the server had closed it, reconnect once and retry.
  beast::error_code ec;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!s.is_open()) {
      s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port_));
      impl_->buffer.clear();
      ++connects_;
    }
    http::write(s, req, ec);
    if (!ec) {
      http::response<http::string_body> res;
      http::read(s, impl_->buffer, res, ec);
      if (!ec) {
        Response out{static_cast<int>(res.result_int()), std::move(res.body()), {}};
        for (const auto& f : res) {
          std::string name(f.name_string());
          std::transform(name.begin(), name.end(), name.begin(), ::tolower);
          out.headers[name] = std::string(f.value());
        }
        if (!res.keep_alive()) s.close();
        return out;
      }
      // A stale keep-alive connection fails on read with nothing received: retry that once.
      bool stale = attempt == 0 && ec == http::error::end_of_stream;
      beast::error_code ignored;
      s.close(ignored);
      if (!stale) break;
    } else {
      beast::error_code ignored;
      s.close(ignored);
    }
  }
  throw std::runtime_error(fmt::format("{} {}: {}", method, target, ec.message()));
}

struct RawConnection::Impl {
  net::io_context ioc;
  tcp::socket socket{ioc};
};

RawConnection::RawConnection(unsigned short port) : impl_(std::make_unique<Impl>()) {
  impl_->socket.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
}
RawConnection::~RawConnection() = default;

void RawConnection::send(const std::string& bytes) {
  net::write(impl_->socket, net::buffer(bytes));
}

std::string RawConnection::receive(milliseconds timeout, const std::string& until) {
  std::string out;
  auto deadline = steady_clock::now() + timeout;
  char buf[4096];
  while (steady_clock::now() < deadline) {
    if (!until.empty() && out.find(until) != std::string::npos) break;
    pollfd p{impl_->socket.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    beast::error_code ec;
    auto n = impl_->socket.read_some(net::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;  // EOF: the server closed the connection
  }
  return out;
}

std::string raw_exchange(unsigned short port, const std::string& request, milliseconds timeout) {
  RawConnection c(port);
  c.send(request);
  return c.receive(timeout);
}

// ---- JSON ----------------------------------------------------------------------------------

simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& text) {
  simdjson::dom::element el;
  auto err = parser.parse(text).get(el);
  REQUIRE_MESSAGE(err == simdjson::SUCCESS, "not JSON: ", text.substr(0, 300));
  return el;
}

std::string str(simdjson::dom::element el) {
  std::string_view v;
  REQUIRE(el.get_string().get(v) == simdjson::SUCCESS);
  return std::string(v);
}

}  // namespace sim_test
