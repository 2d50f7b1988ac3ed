#include "tests/support/support.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "core/log.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "core/files.hpp"
#include "core/spool.hpp"

#ifndef INGESTD_BINARY
#error "INGESTD_BINARY must name the built ingestd"
#endif

namespace ingestd::test {
namespace {

std::string random_suffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:012x}", rng() & 0xffffffffffffULL);
}

int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

void run_or_throw(const std::string& cmd) {
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("command failed: " + cmd);
}

std::string as_owner(const std::string& cmd) {
  return ::geteuid() == 0 ? fmt::format("runuser -u postgres -- {}", cmd) : cmd;
}

}  // namespace

TempDir::TempDir() {
  auto base = fs::temp_directory_path() / fmt::format("ingestd-test-{}", random_suffix());
  fs::create_directories(base);
  path_ = base;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string admin_url() {
  const char* url = std::getenv("INGESTD_TEST_DATABASE_URL");
  if (!url || !*url)
    throw std::runtime_error(
        "INGESTD_TEST_DATABASE_URL is not set: run the database tests through tests/run.sh");
  return url;
}

TestDatabase::TestDatabase(std::string admin) : admin_(std::move(admin)) {
  name_ = "ingestd_t_" + random_suffix();
  auto conn = pg::Connection::open({admin_, "ingestd-test"}, never_);
  conn.exec_script(fmt::format("CREATE DATABASE {}", name_));
  // Replace the database name in the admin URL (always a URI ending in /<db> here).
  url_ = admin_.substr(0, admin_.rfind('/') + 1) + name_;
}

TestDatabase::~TestDatabase() {
  try {
    auto conn = pg::Connection::open({admin_, "ingestd-test"}, never_);
    conn.exec_script(fmt::format("DROP DATABASE IF EXISTS {} WITH (FORCE)", name_));
  } catch (const std::exception&) {
    // A stopped private cluster takes its databases with it.
  }
}

pg::Connection TestDatabase::connect() const {
  return pg::Connection::open({url_, "ingestd-test"}, never_);
}

std::string TestDatabase::scalar(const std::string& sql) const {
  auto conn = connect();
  auto r = conn.exec(sql);
  if (r.rows() == 0 || r.is_null(0, 0)) return "";
  return std::string(r.get(0, 0));
}

std::int64_t TestDatabase::count(const std::string& sql) const {
  return std::stoll(scalar(sql));
}

TempCluster::TempCluster() : port_(free_port()) {
  for (const auto& d : fs::directory_iterator("/usr/lib/postgresql"))
    if (fs::exists(d.path() / "bin/initdb") && d.path().string() > bin_)
      bin_ = (d.path() / "bin").string();
  if (bin_.empty()) throw std::runtime_error("no PostgreSQL server in /usr/lib/postgresql");
  if (::geteuid() == 0) {
    ::chmod(dir_.path().c_str(), 0755);
    run_or_throw(fmt::format("chown postgres: {}", dir_.path().string()));
  }
  run_or_throw(
      as_owner(fmt::format("{}/initdb -D {}/data -U postgres -A trust -E UTF8 "
                           "--no-locale >{}/initdb.log 2>&1",
                           bin_, dir_.path().string(), dir_.path().string())));
  start();
}

TempCluster::~TempCluster() {
  if (running_) {
    std::system(as_owner(fmt::format("{}/pg_ctl -D {}/data -m immediate -w stop >/dev/null 2>&1",
                                     bin_, dir_.path().string()))
                    .c_str());
  }
}

void TempCluster::start() {
  run_or_throw(as_owner(fmt::format(
      "{0}/pg_ctl -D {1}/data -l {1}/server.log -w -t 60 -o \"-c listen_addresses=127.0.0.1 "
      "-p {2} -k {1}\" start >/dev/null 2>&1",
      bin_, dir_.path().string(), port_)));
  running_ = true;
}

void TempCluster::stop() {
  run_or_throw(as_owner(fmt::format("{}/pg_ctl -D {}/data -m immediate -w stop >/dev/null 2>&1",
                                    bin_, dir_.path().string())));
  running_ = false;
}

std::string TempCluster::admin_url() const {
  return fmt::format("postgresql://postgres@127.0.0.1:{}/postgres", port_);
}

std::string config_yaml(const ConfigOptions& o) {
  std::string y = fmt::format(
      "database:\n  url: \"{}\"\n  retry_initial: 100ms\n  retry_max: 1s\n"
      "spool:\n  dir: {}\n"
      "staging:\n  poll_interval: 200ms\n"
      "log:\n  level: debug\n"
      "sources:\n  sim:\n    base_url: http://127.0.0.1:9/graphql\n    entities:\n",
      o.database_url, o.spool_dir.string());
  for (const auto& e : o.entities) {
    y += fmt::format("      {}:\n        id: {}\n        rest: {{path: /rest/{}}}\n", e, o.id_path,
                     e);
    if (auto it = o.entity_extra.find(e); it != o.entity_extra.end()) {
      std::string_view block = it->second;
      while (!block.empty()) {
        auto nl = block.find('\n');
        y += fmt::format("        {}\n", block.substr(0, nl));
        block = nl == std::string_view::npos ? std::string_view{} : block.substr(nl + 1);
      }
    }
  }
  y += o.extra;
  return y;
}

config::Config write_config(const fs::path& dir, const ConfigOptions& o) {
  auto path = dir / "ingestd.yaml";
  std::ofstream(path) << config_yaml(o);
  auto r = config::load_file(path);
  if (!r.config) {
    std::string all;
    for (const auto& e : r.errors) all += e + "\n";
    throw std::runtime_error("test config invalid:\n" + all);
  }
  return *r.config;
}

std::string binary() {
  return INGESTD_BINARY;
}

std::string read_text(const fs::path& p) {
  return read_file(p).value_or("");
}

Child::Child(const std::string& program, const std::vector<std::string>& args, const fs::path& log,
             const std::map<std::string, std::string>& env)
    : log_(log) {
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // The test runner's own signal handlers must not run in the child before exec.
    for (int sig : {SIGTERM, SIGINT, SIGSEGV, SIGABRT, SIGPIPE}) ::signal(sig, SIG_DFL);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    std::string bin = program;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
}

Child::~Child() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
}

void Child::signal(int sig) const {
  ::kill(pid_, sig);
}

std::optional<int> Child::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Child::log_text() const {
  return read_text(log_);
}

bool Child::wait_for_log(std::string_view needle, std::chrono::milliseconds timeout) const {
  return eventually([&] { return log_text().find(needle) != std::string::npos; }, timeout);
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

fs::path spool_page(const fs::path& spool, const std::string& entity,
                    const std::vector<std::string>& records, std::int64_t page,
                    const std::string& run_id, const std::string& mode) {
  spool::Meta m;
  m.source = "sim";
  m.entity = entity;
  m.run_id = run_id;
  m.mode = mode;
  m.page = page;
  m.fetched_at = std::chrono::system_clock::now();
  std::vector<std::string_view> views(records.begin(), records.end());
  return spool::write_page(spool, m, views);
}

}  // namespace ingestd::test

namespace ingestd::test {
fs::path spool_run_end(const fs::path& spool, const std::string& entity, const std::string& run_id,
                       const std::string& mode, std::int64_t pages, std::int64_t records) {
  spool::Meta m;
  m.kind = spool::Kind::run_end;
  m.source = "sim";
  m.entity = entity;
  m.run_id = run_id;
  m.mode = mode;
  m.pages = pages;
  m.records = records;
  m.fetched_at = std::chrono::system_clock::now();
  return spool::write_run_end(spool, m);
}
}  // namespace ingestd::test

namespace ingestd::test {
const std::map<std::string, std::string>& reconciler_tables() {
  static const std::map<std::string, std::string> tables = {
      {"clients", R"y(table:
  columns:
    first_name: {path: firstName, type: text}
    last_name:  {path: lastName, type: text}
    email:      {path: email, type: text}
  placeholder: {first_name: Unknown, last_name: "({id})"})y"},
      {"users", R"y(table:
  columns:
    name: {path: name, type: text}
  placeholder: {name: "Unknown technician ({id})"})y"},
      {"pianos", R"y(table:
  columns:
    serial:    {path: serialNumber, type: text}
    client_id: {path: client.id, type: text, references: clients}
  placeholder: {serial: "?"})y"},
      {"timeline_entries", R"y(table:
  columns:
    occurred_at: {path: occurredAt, type: timestamptz, required: true}
    minutes:     {path: minutes, type: integer}
    piano_id:    {path: piano.id, type: text, references: pianos}
    user_id:     {path: user.id, type: text, references: users}
    client_id:   {path: client.id, type: text, references: clients})y"},
  };
  return tables;
}
LogCapture::LogCapture(std::string_view level) {
  log::init(level, std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
}

LogCapture::~LogCapture() {
  log::init("info", std::make_shared<spdlog::sinks::stderr_sink_mt>());
}

}  // namespace ingestd::test
