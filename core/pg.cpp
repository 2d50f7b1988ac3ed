#include "core/pg.hpp"

#include <poll.h>

#include <atomic>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "core/dsn.hpp"
#include "core/stop.hpp"

namespace ingestd::pg {

Transaction::Transaction(Connection& conn) : conn_(conn) {
  conn_.exec_script("BEGIN");
}

Transaction::~Transaction() {
  if (!open_ || !conn_.healthy()) return;
  try {
    conn_.exec_script("ROLLBACK");
  } catch (...) {  // the connection is going away: the server rolls back
  }
}

void Transaction::commit() {
  conn_.exec_script("COMMIT");
  open_ = false;
}

bool Error::retryable() const {
  if (connection_lost_) return true;
  static constexpr std::string_view transient[] = {
      "08",     // connection exception
      "40001",  // serialization_failure
      "40P01",  // deadlock_detected
      "53",     // insufficient resources (disk full, out of memory, too many connections)
      "57P01", "57P02", "57P03",  // admin/crash shutdown, cannot connect now
      "55P03",                    // lock_not_available
  };
  for (auto p : transient)
    if (sqlstate_.rfind(p, 0) == 0) return true;
  return false;
}

Identifier::Identifier(std::string_view name) : name_(name) {
  if (!valid_identifier(name))
    throw std::invalid_argument(fmt::format(
        "invalid identifier '{}': use lowercase letters, digits and _, at most 63 bytes", name));
}

std::string array_literal(const std::vector<Param>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    if (!values[i]) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char c : *values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::int64_t Result::get_int(int row, int col) const {
  auto s = get(row, col);
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

std::int64_t Result::affected() const {
  const char* n = PQcmdTuples(r_.get());
  return (n && *n) ? std::strtoll(n, nullptr, 10) : 0;
}

Connection::Connection(PGconn* c, const StopToken& stop)
    : conn_(c, &PQfinish), stop_(&stop), serial_([] {
        static std::atomic<std::uint64_t> next{1};
        return next++;
      }()) {
  // Server NOTICEs (e.g. "relation already exists, skipping") are not errors; keep them out
  // of stderr, where they would break the one-event-per-line log.
  if (c)
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);
}

Connection Connection::open(const ConnectOptions& opts, const StopToken& stop) {
  std::string timeout = std::to_string(std::max<long>(1, opts.connect_timeout.count() / 1000));
  // expand_dbname=1: "dbname" may itself be a full conninfo or URI; the other keys then fill
  // in what it does not say. Keepalives detect a dead server on an idle connection.
  const char* keys[] = {"dbname",          "application_name",    "connect_timeout",  "keepalives",
                        "keepalives_idle", "keepalives_interval", "keepalives_count", nullptr};
  const char* vals[] = {opts.conninfo.c_str(),
                        opts.application_name.c_str(),
                        timeout.c_str(),
                        "1",
                        "30",
                        "10",
                        "3",
                        nullptr};
  PGconn* raw = PQconnectStartParams(keys, vals, 1);
  Connection c(raw, stop);
  if (!raw) throw Error("out of memory starting a connection", "", true);
  auto deadline = std::chrono::steady_clock::now() + opts.connect_timeout;
  for (PostgresPollingStatusType st = PGRES_POLLING_WRITING;;) {
    if (PQstatus(raw) == CONNECTION_BAD) st = PGRES_POLLING_FAILED;
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED)
      throw Error(
          fmt::format("cannot connect to {}: {}", dsn::redact(opts.conninfo), PQerrorMessage(raw)),
          "08001", true);
    if (stop.stop_requested()) throw Error("connect interrupted by shutdown", "57014", true);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      throw Error(fmt::format("timed out connecting to {}", dsn::redact(opts.conninfo)), "08001",
                  true);
    pollfd fds[2] = {
        {PQsocket(raw), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0},
        {stop.fd(), POLLIN, 0}};
    ::poll(fds, 2, static_cast<int>(std::min<long>(left.count(), 1000)));
    st = PQconnectPoll(raw);
  }
  PQsetnonblocking(raw, 1);
  return c;
}

void Connection::fail(std::string_view what, PGresult* r) {
  std::string sqlstate;
  std::string msg;
  if (r) {
    const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (s) sqlstate = s;
    msg = PQresultErrorMessage(r);
    PQclear(r);
  }
  if (msg.empty()) msg = PQerrorMessage(conn_.get());
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  bool lost = PQstatus(conn_.get()) != CONNECTION_OK;
  if (sqlstate.empty() && lost) sqlstate = "08006";
  throw Error(fmt::format("{}: {}", what, msg), sqlstate, lost);
}

// Waits for the socket. After a stop request the current statement gets a grace period to
// finish (finishing is better than rolling back); past it the statement is cancelled.
void Connection::wait_socket(Want want) {
  using clock = std::chrono::steady_clock;
  static constexpr auto grace = std::chrono::milliseconds(3000);
  bool cancel_sent = false;
  for (;;) {
    bool stopping = stop_->stop_requested();
    if (stopping && !stop_seen_) stop_seen_ = clock::now();  // the grace counts from the stop
    if (stopping && !cancel_sent && clock::now() - *stop_seen_ > grace) {
      if (PGcancel* cancel = PQgetCancel(conn_.get())) {
        char buf[256];
        PQcancel(cancel, buf, sizeof buf);
        PQfreeCancel(cancel);
      }
      cancel_sent = true;  // cancel once; then wait for the reply
    }
    pollfd fds[2] = {
        {PQsocket(conn_.get()), static_cast<short>(want == Want::read ? POLLIN : POLLOUT), 0},
        {stop_->fd(), POLLIN, 0}};
    int n = ::poll(fds, stopping ? 1 : 2, stopping ? 100 : 1000);
    if (n < 0 && errno != EINTR) fail("poll failed");
    if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
      if (want == Want::read && !PQconsumeInput(conn_.get())) fail("connection lost");
      if (fds[0].revents & POLLNVAL) fail("connection socket closed");
      return;
    }
    if (fds[0].revents) return;
  }
}

void Connection::flush() {
  while (PQflush(conn_.get()) == 1) wait_socket(Want::write);
}

PGresult* Connection::next_result() {
  while (PQisBusy(conn_.get())) {
    wait_socket(Want::read);
    if (!PQconsumeInput(conn_.get())) fail("connection lost");
  }
  return PQgetResult(conn_.get());
}

// Reads every result of what was just sent: throws on the first failure (after draining, so
// the connection stays usable), otherwise returns the last result.
Result Connection::collect(std::string_view what) {
  flush();
  PGresult* last = nullptr;
  PGresult* failed = nullptr;
  while (PGresult* r = next_result()) {
    auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY && !failed) {
      failed = r;
      continue;
    }
    if (last) PQclear(last);
    last = r;
  }
  if (failed) {
    if (last) PQclear(last);
    fail(what, failed);
  }
  if (!last) fail(what);
  return Result(last);
}

Result Connection::exec(std::string_view sql, const std::vector<Param>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  std::string text(sql);
  if (!PQsendQueryParams(conn_.get(), text.c_str(), static_cast<int>(values.size()), nullptr,
                         values.data(), nullptr, nullptr, 0))
    fail("cannot send query");
  return collect("query failed");
}

bool Connection::wait_notification(std::chrono::milliseconds d) {
  auto deadline = std::chrono::steady_clock::now() + d;
  for (;;) {
    if (!PQconsumeInput(conn_.get())) fail("connection lost");
    bool got = false;
    while (PGnotify* n = PQnotifies(conn_.get())) {
      got = true;
      PQfreemem(n);
    }
    if (got) return true;
    auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || stop_->stop_requested()) return false;
    pollfd fds[2] = {{PQsocket(conn_.get()), POLLIN, 0}, {stop_->fd(), POLLIN, 0}};
    int n = ::poll(fds, 2, static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) fail("poll failed");
    if (fds[0].revents & POLLNVAL) fail("connection socket closed");
  }
}

void Connection::exec_script(std::string_view sql) {
  std::string text(sql);
  if (!PQsendQuery(conn_.get(), text.c_str())) fail("cannot send statement");
  (void)collect("statement failed");
}

void Connection::copy_begin(std::string_view copy_sql) {
  std::string text(copy_sql);
  if (!PQsendQuery(conn_.get(), text.c_str())) fail("cannot send COPY");
  flush();
  PGresult* r = next_result();
  if (!r) fail("COPY did not start");
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    while (PGresult* extra = next_result()) PQclear(extra);
    fail("COPY failed to start", r);
  }
  PQclear(r);
}

void Connection::copy_put(std::string_view data) {
  for (;;) {
    int rc = PQputCopyData(conn_.get(), data.data(), static_cast<int>(data.size()));
    if (rc == 1) break;
    if (rc < 0) fail("COPY data not accepted");
    wait_socket(Want::write);  // rc == 0: the output buffer is full
  }
  // Push what is buffered so the server parses while we prepare the next chunk.
  while (PQflush(conn_.get()) == 1) {
    wait_socket(Want::write);
    // The server may have rejected a row and sent an error already: read it to unblock.
    if (!PQconsumeInput(conn_.get())) fail("connection lost");
  }
}

void Connection::copy_end() {
  for (;;) {
    int rc = PQputCopyEnd(conn_.get(), nullptr);
    if (rc == 1) break;
    if (rc < 0) fail("COPY end not accepted");
    wait_socket(Want::write);
  }
  (void)collect("COPY failed");
}

void Connection::copy_abort(std::string_view reason) noexcept {
  if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) return;
  std::string r(reason);
  if (PQputCopyEnd(conn_.get(), r.c_str()) < 0) return;
  PQsetnonblocking(conn_.get(), 0);  // drain synchronously; errors are expected here
  while (PGresult* res = PQgetResult(conn_.get())) PQclear(res);
  PQsetnonblocking(conn_.get(), 1);
}

BinaryCopyWriter::BinaryCopyWriter() {
  static constexpr char header[] = "PGCOPY\n\377\r\n\0";
  buf_.append(header, 11);
  put_i32(0);  // flags
  put_i32(0);  // header extension length
}

void BinaryCopyWriter::put_i16(std::int16_t v) {
  auto u = static_cast<std::uint16_t>(v);
  char b[2] = {static_cast<char>(u >> 8), static_cast<char>(u & 0xff)};
  buf_.append(b, 2);
}

void BinaryCopyWriter::put_i32(std::int32_t v) {
  auto u = static_cast<std::uint32_t>(v);
  char b[4] = {static_cast<char>(u >> 24), static_cast<char>((u >> 16) & 0xff),
               static_cast<char>((u >> 8) & 0xff), static_cast<char>(u & 0xff)};
  buf_.append(b, 4);
}

void BinaryCopyWriter::begin_row(std::int16_t fields) {
  put_i16(fields);
}
void BinaryCopyWriter::add_null() {
  put_i32(-1);
}

void BinaryCopyWriter::add_text(std::string_view s) {
  put_i32(static_cast<std::int32_t>(s.size()));
  buf_.append(s);
}

void BinaryCopyWriter::add_jsonb(std::string_view json) {
  put_i32(static_cast<std::int32_t>(json.size() + 1));
  buf_.push_back('\1');
  buf_.append(json);
}

void BinaryCopyWriter::add_uuid(const unsigned char (&bytes)[16]) {
  put_i32(16);
  buf_.append(reinterpret_cast<const char*>(bytes), 16);
}

void BinaryCopyWriter::add_int64(std::int64_t v) {
  put_i32(8);
  auto u = static_cast<std::uint64_t>(v);
  char b[8];
  for (int i = 7; i >= 0; --i, u >>= 8) b[i] = static_cast<char>(u & 0xff);
  buf_.append(b, 8);
}

void BinaryCopyWriter::finish() {
  put_i16(-1);
}

std::int64_t pg_epoch_micros(std::chrono::system_clock::time_point t) {
  static constexpr std::int64_t unix_to_2000_us = 946'684'800'000'000;
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count() -
         unix_to_2000_us;
}

}  // namespace ingestd::pg
