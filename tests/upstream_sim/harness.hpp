// What the simulator's tests stand on: the real upstream_sim binary as a child process on a
// free port, a small keep-alive HTTP client (Beast, synchronous), and walkers that read a
// whole listing in each pagination style. The tests are black-box: nothing here includes the
// simulator's own headers.
#pragma once

#include <simdjson.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sim_test {

// upstream_sim started with `args` (plus --port 0); the constructor returns once the
// "listening 127.0.0.1:<port>" line has been read, and fails the test after 5 s without it.
class Sim {
 public:
  explicit Sim(const std::vector<std::string>& args = {});
  ~Sim();  // SIGKILL if still running
  Sim(const Sim&) = delete;
  Sim& operator=(const Sim&) = delete;

  [[nodiscard]] unsigned short port() const { return port_; }
  void signal(int sig) const;
  // Exit status (or 128 + signal) once the process ended, nullopt if still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  unsigned short port_ = 0;
  std::optional<int> status_;
};

struct Response {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // names in lower case
  [[nodiscard]] std::string header(const std::string& lower_name) const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// One connection, reused across requests (reopened when the server closed it).
class Client {
 public:
  explicit Client(unsigned short port);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  Response get(const std::string& target, const Headers& headers = {});
  Response post(const std::string& target, const std::string& body, const Headers& headers = {},
                const std::string& content_type = "application/json");
  // Throws std::runtime_error when no complete response arrives (e.g. the truncate fault).
  Response request(const std::string& method, const std::string& target, const std::string& body,
                   const Headers& headers, const std::string& content_type);
  [[nodiscard]] int connects() const { return connects_; }  // TCP connections opened so far
  [[nodiscard]] unsigned short port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  unsigned short port_;
  int connects_ = 0;
};

// A bare TCP connection, for what Client cannot do: send half a request, see a cut reply.
class RawConnection {
 public:
  explicit RawConnection(unsigned short port);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  void send(const std::string& bytes);
  // Bytes received until `until` has arrived (when not empty), the server closed the
  // connection, or `timeout` passed.
  std::string receive(std::chrono::milliseconds timeout, const std::string& until = "");

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `request` on a new connection; every byte received until the server closes it.
std::string raw_exchange(unsigned short port, const std::string& request,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));

// ---- JSON ----------------------------------------------------------------------------------

// Parses `text` (failing the test when it is not JSON); `parser` owns the result.
simdjson::dom::element parse(simdjson::dom::parser& parser, const std::string& text);
std::string str(simdjson::dom::element el);  // a JSON string's value (fails the test otherwise)

// ---- Listings ------------------------------------------------------------------------------

struct Entity {
  std::string rest;   // "timeline_entries"
  std::string field;  // "allTimelineEntries"
};
extern const std::vector<Entity> kEntities;
const Entity& entity(const std::string& rest);

struct Row {
  std::string id;
  std::string updated_at;
  std::string json;  // the record as sent, minified
};

struct Walk {
  std::vector<Row> rows;
  int pages = 0;
  std::int64_t total = -1;  // the count the server reported (page and REST styles)
};

// Extra GraphQL variables as JSON members without braces, e.g. R"("since":"2026-10-01T00:00:00Z")".
// `after`: a cursor to start from (from the beginning when empty).
Walk relay_walk(Client& c, const Entity& e, int first, const std::string& extra_vars = "",
                const std::string& after = "");
Walk page_walk(Client& c, const Entity& e, int per_page, const std::string& extra_vars = "");
// Follows Link rel="next" from /rest/<entity>?_page=1&_limit=<limit><extra_query>.
Walk rest_page_walk(Client& c, const Entity& e, int limit, const std::string& extra_query = "");
Walk rest_offset_walk(Client& c, const Entity& e, int limit, const std::string& extra_query = "");

// One GraphQL request; `vars` is the JSON members of "variables" without braces.
Response graphql(Client& c, const Entity& e, const std::string& vars, const Headers& headers = {});

struct ControlIds {
  std::vector<std::string> ids;  // sorted
  std::string max_updated_at;
};
ControlIds control_ids(Client& c, const std::string& entity);

// `s` against `pattern`, character by character: 'd' is a digit, 'a' a letter or digit,
// anything else itself. (Not std::regex: GCC 12 warns inside it under the sanitizers.)
bool matches(std::string_view s, std::string_view pattern);
// prefix + 16 base62 characters, the upstream's id format.
bool is_id(std::string_view s, std::string_view prefix);

std::vector<std::string> ids_of(const std::vector<Row>& rows);
std::vector<std::string> sorted(std::vector<std::string> v);
// True when rows are in strictly increasing (updatedAt, id) order.
bool in_listing_order(const std::vector<Row>& rows);

}  // namespace sim_test
