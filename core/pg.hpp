// PostgreSQL through libpq: values only as parameters, identifiers validated and quoted,
// binary COPY, and every wait interruptible by the stop token so SIGTERM is honoured even
// while the server is slow.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <libpq-fe.h>

namespace ingestd {
class StopToken;
}

namespace ingestd::pg {

// Who can fix it decides what the caller does: a lost connection or a transient server state
// is retried after a backoff; a data error belongs to the row or file that caused it; anything
// else is a bug or a schema problem and is reported.
class Error : public std::runtime_error {
 public:
  Error(std::string message, std::string sqlstate, bool connection_lost)
      : std::runtime_error(std::move(message)),
        sqlstate_(std::move(sqlstate)),
        connection_lost_(connection_lost) {}
  [[nodiscard]] const std::string& sqlstate() const { return sqlstate_; }
  [[nodiscard]] bool connection_lost() const { return connection_lost_; }
  // Connection failures, server shutdown, serialization failures, deadlocks, lack of resources.
  [[nodiscard]] bool retryable() const;
  // SQLSTATE class 22: the value itself is bad (invalid JSON text, numeric overflow, ...).
  [[nodiscard]] bool data_error() const { return sqlstate_.rfind("22", 0) == 0; }
  [[nodiscard]] bool unique_violation() const { return sqlstate_ == "23505"; }

 private:
  std::string sqlstate_;
  bool connection_lost_;
};

// A table or column name from the config: [a-z_][a-z0-9_]*, at most 63 bytes. Anything else
// is refused before it can reach SQL; quoted() is then always safe to splice.
class Identifier {
 public:
  explicit Identifier(std::string_view name);
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] std::string quoted() const { return "\"" + name_ + "\""; }

 private:
  std::string name_;
};

// One query parameter in text form; nullopt is SQL NULL.
using Param = std::optional<std::string>;
[[nodiscard]] inline Param param(std::string_view s) {
  return std::string(s);
}
[[nodiscard]] inline Param param(const char* s) {
  return std::string(s);
}
[[nodiscard]] inline Param param(const std::string& s) {
  return s;
}
[[nodiscard]] inline Param param(std::int64_t v) {
  return std::to_string(v);
}
[[nodiscard]] inline Param param(int v) {
  return std::to_string(v);
}
// Shortest text that reads back as the same double (std::to_chars).
[[nodiscard]] inline Param param(double v) {
  char buf[32];
  auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  return std::string(buf, end);
}
[[nodiscard]] inline Param param(std::nullopt_t) {
  return std::nullopt;
}
[[nodiscard]] inline Param param(const std::optional<std::string>& v) {
  return v;
}

// A text-format array literal ({"a","b",NULL}) for `= ANY($1::text[])` or unnest($1::text[]):
// many values in one parameter, every element quoted and escaped.
[[nodiscard]] std::string array_literal(const std::vector<Param>& values);

class Result {
 public:
  explicit Result(PGresult* r) : r_(r, &PQclear) {}
  [[nodiscard]] int rows() const { return PQntuples(r_.get()); }
  [[nodiscard]] bool is_null(int row, int col) const { return PQgetisnull(r_.get(), row, col); }
  [[nodiscard]] std::string_view get(int row, int col) const {
    return {PQgetvalue(r_.get(), row, col),
            static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
  }
  [[nodiscard]] std::int64_t get_int(int row, int col) const;
  [[nodiscard]] std::int64_t affected() const;

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> r_;
};

struct ConnectOptions {
  std::string conninfo;
  std::string application_name = "ingestd";
  std::chrono::milliseconds connect_timeout{10'000};
};

class Connection {
 public:
  // Connects once; throws Error (connection_lost) on failure. `stop` interrupts the wait.
  static Connection open(const ConnectOptions& opts, const StopToken& stop);

  Connection(Connection&&) noexcept = default;
  Connection& operator=(Connection&&) noexcept = default;
  ~Connection() = default;

  Result exec(std::string_view sql, const std::vector<Param>& params = {});
  template <class... A>
  Result query(std::string_view sql, A&&... args) {
    return exec(sql, std::vector<Param>{param(std::forward<A>(args))...});
  }

  // Several statements, no parameters (simple query protocol): migrations, BEGIN/COMMIT.
  void exec_script(std::string_view sql);

  // Binary COPY ... FROM STDIN. The caller streams rows with put(); end() completes it;
  // abandoning it (exception) aborts the COPY and thereby the transaction.
  void copy_begin(std::string_view copy_sql);
  void copy_put(std::string_view data);
  void copy_end();
  void copy_abort(std::string_view reason) noexcept;

  // Waits up to `d` for a notification on a channel this connection LISTENs to (the
  // connection idle, outside a transaction). True when one came (every pending one is
  // consumed); false on timeout or a stop request. A lost connection throws Error.
  bool wait_notification(std::chrono::milliseconds d);

  [[nodiscard]] bool healthy() const { return conn_ && PQstatus(conn_.get()) == CONNECTION_OK; }
  // Unique per opened connection in this process: session state (temp tables, prepared
  // statements) belongs to one serial and must be recreated after a reconnect.
  [[nodiscard]] std::uint64_t serial() const { return serial_; }

 private:
  Connection(PGconn* c, const StopToken& stop);
  enum class Want { read, write };
  void wait_socket(Want want);
  void flush();
  PGresult* next_result();
  Result collect(std::string_view what);
  [[noreturn]] void fail(std::string_view what, PGresult* r = nullptr);

  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_;
  const StopToken* stop_;
  std::uint64_t serial_;
  std::optional<std::chrono::steady_clock::time_point> stop_seen_;
};

// The channel the stager NOTIFYs (payload: the entity) when a commit staged new rows, and the
// reconciler LISTENs to while idle, so that it starts at once instead of at its next poll.
inline constexpr std::string_view kStagedChannel = "ingestd_staged";

// BEGIN now; ROLLBACK when it goes out of scope without commit() (an exception on the way).
class Transaction {
 public:
  explicit Transaction(Connection& conn);
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit();

 private:
  Connection& conn_;
  bool open_ = true;
};

// Builds a binary COPY stream (PGCOPY format): header, rows, trailer. Reused across rows to
// avoid allocation; flush() hands out what is buffered so far.
class BinaryCopyWriter {
 public:
  BinaryCopyWriter();
  void begin_row(std::int16_t fields);
  void add_null();
  void add_text(std::string_view s);      // text, varchar
  void add_jsonb(std::string_view json);  // version byte 1 + JSON text
  void add_uuid(const unsigned char (&bytes)[16]);
  void add_int64(std::int64_t v);  // bigint, timestamptz (microseconds since 2000-01-01)
  void finish();                   // trailer
  [[nodiscard]] std::size_t size() const { return buf_.size(); }
  [[nodiscard]] std::string_view data() const { return buf_; }
  void clear() { buf_.clear(); }

 private:
  void put_i16(std::int16_t v);
  void put_i32(std::int32_t v);
  std::string buf_;
};

// Microseconds since 2000-01-01 UTC, the binary representation of timestamptz.
[[nodiscard]] std::int64_t pg_epoch_micros(std::chrono::system_clock::time_point t);

}  // namespace ingestd::pg
