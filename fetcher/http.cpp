#include "fetcher/http.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "core/stop.hpp"

namespace ingestd::fetcher {
namespace {

struct GlobalInit {
  GlobalInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  ~GlobalInit() { curl_global_cleanup(); }
};

struct Transfer {
  HttpResponse* response;
  const StopToken* stop;
  std::optional<std::chrono::steady_clock::time_point> stop_seen;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  static_cast<Transfer*>(user)->response->body.append(data, size * n);
  return size * n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  std::string_view line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
      value.remove_suffix(1);
    auto* response = static_cast<Transfer*>(user)->response;
    // The body's size, when announced, is allocated once (a lying header costs at most 64 MiB).
    if (name == "content-length" && !value.empty() &&
        value.find_first_not_of("0123456789") == std::string_view::npos) {
      auto announced = std::strtoull(std::string(value).c_str(), nullptr, 10);
      response->body.reserve(std::min<unsigned long long>(announced, 64ULL << 20));
    }
    response->headers[name] = std::string(value);
  } else if (line.rfind("HTTP/", 0) == 0) {
    // A new response (after a redirect or 100-continue): forget the previous headers.
    static_cast<Transfer*>(user)->response->headers.clear();
  }
  return size * n;
}

// Finishing the page in flight is better than abandoning it, but not at any price: a
// transfer still running 3 s after the stop request is aborted (the page is fetched again
// from the checkpoint on the next start).
int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (!t->stop->stop_requested()) return 0;
  auto now = std::chrono::steady_clock::now();
  if (!t->stop_seen) t->stop_seen = now;
  return now - *t->stop_seen > std::chrono::seconds(3) ? 1 : 0;
}

}  // namespace

// One curl multi handle and the results it reported for transfers whose owner was not the one
// reading them (clients sharing it each wait for their own).
struct HttpClient::Multi {
  CURLM* handle = curl_multi_init();
  std::map<CURL*, CURLcode> finished;
  Multi() = default;
  Multi(const Multi&) = delete;
  Multi& operator=(const Multi&) = delete;
  ~Multi() {
    if (handle) curl_multi_cleanup(handle);
  }
};

// What one request needs while it is in flight: curl keeps pointers to all of it.
struct HttpClient::Pending {
  std::string url;
  std::optional<std::string> body;
  curl_slist* headers = nullptr;
  HttpResponse response;
  Transfer transfer{};
  std::optional<std::chrono::steady_clock::time_point> deadline;  // set by complete()
  ~Pending() { curl_slist_free_all(headers); }
};

HttpClient::HttpClient(std::chrono::milliseconds timeout, bool tls_verify, const StopToken& stop,
                       const HttpClient* share_with)
    : timeout_(timeout), tls_verify_(tls_verify), stop_(stop) {
  static GlobalInit init;
  multi_ = share_with ? share_with->multi_ : std::make_shared<Multi>();
  curl_ = curl_easy_init();
  if (!curl_ || !multi_->handle) {
    curl_easy_cleanup(static_cast<CURL*>(curl_));
    throw std::runtime_error("curl_easy_init or curl_multi_init failed");
  }
}

HttpClient::~HttpClient() {
  abort();  // a request still in flight: its connection closes with it
  curl_easy_cleanup(static_cast<CURL*>(curl_));
}

HttpResponse HttpClient::get(const std::string& url, const std::vector<std::string>& headers) {
  start(url, std::nullopt, headers);
  return complete();
}

HttpResponse HttpClient::post(const std::string& url, const std::string& body,
                              const std::vector<std::string>& headers) {
  start(url, body, headers);
  return complete();
}

void HttpClient::start(const std::string& url, const std::optional<std::string>& body,
                       const std::vector<std::string>& headers) {
  if (busy_) throw std::logic_error("HttpClient::start: a request is already in flight");
  auto* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // keeps the connection cache (the multi handle's)
  pending_ = std::make_unique<Pending>();
  auto& p = *pending_;
  p.url = url;
  p.body = body;
  p.transfer = Transfer{&p.response, &stop_, std::nullopt};
  for (const auto& h : headers) p.headers = curl_slist_append(p.headers, h.c_str());
  curl_easy_setopt(c, CURLOPT_URL, p.url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, p.headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &p.transfer);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &p.transfer);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &p.transfer);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  // No CURLOPT_TIMEOUT_MS nor CURLOPT_CONNECTTIMEOUT_MS: curl counts both from start(), and
  // a request sent ahead on a new connection does not progress while its caller parses and
  // queues the previous page (nor while the spool's queue is full): it would fail as "timed
  // out" with the handshake long done. complete() counts the whole-request timeout, connect
  // included, from when the caller starts waiting (Pending::deadline).
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // any encoding curl can decode
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, tls_verify_ ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, tls_verify_ ? 2L : 0L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ingestd/0.1");
  if (p.body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, p.body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(p.body->size()));
  }
  auto* m = multi_->handle;
  multi_->finished.erase(c);
  if (CURLMcode rc = curl_multi_add_handle(m, c); rc != CURLM_OK)
    throw TransportError(fmt::format("{} ({})", curl_multi_strerror(rc), url), false);
  busy_ = true;
  // Drive the transfer as far as it goes without waiting: on a kept-alive connection that
  // sends the request, so the server works on it while the caller does something else.
  int running = 0;
  curl_multi_perform(m, &running);
}

void HttpClient::abort() noexcept {
  if (!busy_) return;
  curl_multi_remove_handle(multi_->handle, static_cast<CURL*>(curl_));
  multi_->finished.erase(static_cast<CURL*>(curl_));
  busy_ = false;
  pending_.reset();
}

HttpResponse HttpClient::complete(std::optional<std::chrono::steady_clock::time_point> by) {
  if (!busy_) throw std::logic_error("HttpClient::complete: no request in flight");
  auto* m = multi_->handle;
  auto* c = static_cast<CURL*>(curl_);
  auto& finished = multi_->finished;
  if (!pending_->deadline) pending_->deadline = std::chrono::steady_clock::now() + timeout_;
  if (by && *by < *pending_->deadline) pending_->deadline = by;
  // Gives up the transfer (its connection closes) and reports why, naming the URL.
  auto fail = [&](std::string_view why, bool timed_out) {
    auto url = pending_->url;
    abort();
    throw TransportError(fmt::format("{} ({})", why, url), timed_out);
  };
  CURLcode result = CURLE_OK;
  for (;;) {
    int running = 0;
    if (CURLMcode mc = curl_multi_perform(m, &running); mc != CURLM_OK)
      fail(curl_multi_strerror(mc), false);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(m, &queued))
      if (msg->msg == CURLMSG_DONE) finished[msg->easy_handle] = msg->data.result;
    if (auto it = finished.find(c); it != finished.end()) {  // read here or by a sharer
      result = it->second;
      finished.erase(it);
      break;
    }
    if (std::chrono::steady_clock::now() > *pending_->deadline)
      fail(fmt::format("Timeout was reached: no complete answer within {} ms", timeout_.count()),
           true);
    // Wakes at least every 100 ms, so that curl checks the stop token and we the deadline.
    if (CURLMcode pc = curl_multi_poll(m, nullptr, 0, 100, nullptr); pc != CURLM_OK)
      fail(curl_multi_strerror(pc), false);
  }
  curl_multi_remove_handle(m, c);
  busy_ = false;
  auto p = std::move(pending_);
  if (result != CURLE_OK)
    throw TransportError(fmt::format("{} ({})", curl_easy_strerror(result), p->url),
                         result == CURLE_OPERATION_TIMEDOUT);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &p->response.status);
  return std::move(p->response);
}

std::string url_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace ingestd::fetcher
