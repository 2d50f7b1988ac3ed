// What the tests stand on: temporary directories, a fresh database per test on the real
// Postgres that tests/run.sh started, a private Postgres cluster for outage tests, and real
// child processes of the real binary.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/pg.hpp"
#include "core/stop.hpp"

namespace ingestd::test {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// The admin URL of the server tests/run.sh started ($INGESTD_TEST_DATABASE_URL).
// Tests that need it fail with a clear message when it is missing.
[[nodiscard]] std::string admin_url();

// A database created for one test and dropped after it.
class TestDatabase {
 public:
  explicit TestDatabase(std::string admin = admin_url());
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;
  [[nodiscard]] const std::string& url() const { return url_; }
  [[nodiscard]] pg::Connection connect() const;
  // First column of the first row, as text ("" for NULL).
  [[nodiscard]] std::string scalar(const std::string& sql) const;
  [[nodiscard]] std::int64_t count(const std::string& sql) const;

 private:
  std::string admin_;
  std::string name_;
  std::string url_;
  StopToken never_;
};

// A private PostgreSQL cluster that a test may stop and start (database outages).
class TempCluster {
 public:
  TempCluster();
  ~TempCluster();
  TempCluster(const TempCluster&) = delete;
  TempCluster& operator=(const TempCluster&) = delete;
  void start();
  void stop();  // immediate shutdown, like a crash of the server
  [[nodiscard]] std::string admin_url() const;
  [[nodiscard]] int port() const { return port_; }

 private:
  TempDir dir_;
  std::string bin_;
  int port_;
  bool running_ = false;
};

struct ConfigOptions {
  std::string database_url;
  fs::path spool_dir;
  std::vector<std::string> entities = {"timeline_entries"};
  std::string id_path = "id";
  std::string extra;  // appended YAML (top-level sections)
  // More YAML inside an entity's block (e.g. its table:), indented by 8 spaces.
  std::map<std::string, std::string> entity_extra;
};
[[nodiscard]] std::string config_yaml(const ConfigOptions& o);
// Writes the YAML to dir/ingestd.yaml and returns the loaded config (fails the test if invalid).
config::Config write_config(const fs::path& dir, const ConfigOptions& o);

// The `table:` blocks of clients, users, pianos (-> clients) and timeline_entries (-> pianos,
// users, clients) for ConfigOptions::entity_extra: the reconciler tests' schema.
[[nodiscard]] const std::map<std::string, std::string>& reconciler_tables();

[[nodiscard]] std::string binary();

// A child process running the real ingestd binary, stdout+stderr to a log file.
class Child {
 public:
  Child(const std::vector<std::string>& args, const fs::path& log,
        const std::map<std::string, std::string>& env = {})
      : Child(binary(), args, log, env) {}
  // Any program (e.g. the upstream simulator).
  Child(const std::string& program, const std::vector<std::string>& args, const fs::path& log,
        const std::map<std::string, std::string>& env = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  void signal(int sig) const;
  // Exit status (WEXITSTATUS, or 128+signal) or nullopt when still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  [[nodiscard]] std::string log_text() const;
  // True once the log contains `needle` (e.g. the "started" event: signal handlers are in).
  bool wait_for_log(std::string_view needle, std::chrono::milliseconds timeout) const;

 private:
  pid_t pid_ = -1;
  fs::path log_;
  std::optional<int> status_;
};

// The process's log lines into a string while it lives; then the log goes to stderr again.
// (Tests used to point the logger at a local stream and only lower the level after: the next
// test that logged a warning wrote to a destroyed stream and crashed.)
class LogCapture {
 public:
  explicit LogCapture(std::string_view level = "debug");
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  [[nodiscard]] std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

[[nodiscard]] std::string binary();
[[nodiscard]] std::string read_text(const fs::path& p);
// Polls `pred` every 20 ms until it holds or `timeout` passes; returns the last value.
bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// Writes a spool page of `records` (each a JSON text) for `entity`; returns its path.
fs::path spool_page(const fs::path& spool, const std::string& entity,
                    const std::vector<std::string>& records, std::int64_t page = 1,
                    const std::string& run_id = "run1", const std::string& mode = "incremental");
// Writes the run_end marker of a run that wrote `pages` pages and `records` records.
fs::path spool_run_end(const fs::path& spool, const std::string& entity, const std::string& run_id,
                       const std::string& mode, std::int64_t pages, std::int64_t records);

}  // namespace ingestd::test
