#include "fetcher/http.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
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
    static_cast<Transfer*>(user)->response->headers[name] = std::string(value);
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

HttpClient::HttpClient(std::chrono::milliseconds timeout, bool tls_verify, const StopToken& stop)
    : timeout_(timeout), tls_verify_(tls_verify), stop_(stop) {
  static GlobalInit init;
  curl_ = curl_easy_init();
  if (!curl_) throw std::runtime_error("curl_easy_init failed");
}

HttpClient::~HttpClient() {
  curl_easy_cleanup(static_cast<CURL*>(curl_));
}

HttpResponse HttpClient::get(const std::string& url, const std::vector<std::string>& headers) {
  return perform(url, nullptr, headers);
}

HttpResponse HttpClient::post(const std::string& url, const std::string& body,
                              const std::vector<std::string>& headers) {
  return perform(url, &body, headers);
}

HttpResponse HttpClient::perform(const std::string& url, const std::string* body,
                                 const std::vector<std::string>& headers) {
  auto* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);  // keeps the connection cache
  HttpResponse response;
  Transfer transfer{&response, &stop_, std::nullopt};
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &transfer);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<long>(timeout_.count(), 10'000)));
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // any encoding curl can decode
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, tls_verify_ ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, tls_verify_ ? 2L : 0L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ingestd/0.1");
  if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
  }
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK)
    throw TransportError(fmt::format("{} ({})", curl_easy_strerror(rc), url),
                         rc == CURLE_OPERATION_TIMEDOUT);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
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
