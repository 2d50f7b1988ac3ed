// upstream_sim: a deterministic fake of the upstream SaaS API (GraphQL, REST, auth, faults) on
// 127.0.0.1, for the fetcher's tests and the demo. See README.md beside this file.
//
// Prints exactly one line, "listening 127.0.0.1:<port>", once it accepts connections; a test
// reads the port from it. Serves until SIGTERM or SIGINT, then exits 0.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/program_options.hpp>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <thread>
#include <vector>

#include "app.hpp"
#include "bad_records.hpp"
#include "server.hpp"

namespace po = boost::program_options;
using namespace upstream_sim;

namespace {

struct Cli {
  Options options;
  int port = 0;
  int threads = 4;
};

// Exits 2 with a message on any usage error, like ingestd itself.
Cli parse_cli(int argc, char** argv) {
  Cli cli;
  std::string auth = "none";
  std::vector<std::string> faults;
  std::string bad_kinds;
  po::options_description desc("upstream_sim options");
  desc.add_options()("help,h", "print this help")("port", po::value(&cli.port)->default_value(0),
                                                  "port on 127.0.0.1 (0: any free port)")(
      "seed", po::value(&cli.options.seed)->default_value(42), "data set seed")(
      "size", po::value(&cli.options.size)->default_value(100),
      "clients; pianos 2x, technicians max(5, size/20), timeline entries 5x, invoices 1x")(
      "auth", po::value(&auth)->default_value("none"),
      "none | bearer:TOKEN | apikey:HEADER:VALUE | oauth2:CLIENT_ID:CLIENT_SECRET")(
      "token-ttl", po::value(&cli.options.token_ttl_s)->default_value(3600),
      "lifetime of oauth2 tokens, seconds")(
      "bad-records", po::value(&cli.options.bad_percent)->default_value(0),
      "percent of the initial records rendered broken (wrong types, huge strings, deep nesting, "
      "invalid UTF-8, NUL, huge numbers, SQL-looking strings, missing and duplicate ids)")(
      "bad-kinds", po::value(&bad_kinds)->default_value(""),
      "comma-separated kinds for --bad-records (default: all): wrong_type bad_time huge_string "
      "deep_nesting invalid_utf8 nul_char huge_number sql_string missing_id duplicate_id")(
      "fault-rate", po::value(&cli.options.random_faults.percent)->default_value(0),
      "percent of data requests that fail at random, each as one of 429 (Retry-After: 1) 500 "
      "503 slow truncate malformed graphql_error; POST /control/fault_rate changes it")(
      "fault-delay", po::value(&cli.options.random_faults.delay_ms)->default_value(3000),
      "delay_ms of the random 'slow' faults")(
      "churn", po::value(&cli.options.churn_per_second)->default_value(0),
      "random changes per second (60% update, 20% add, 20% delete) from the start; "
      "POST /control/churn changes or stops it")(
      "threads", po::value(&cli.threads)->default_value(4), "I/O threads")(
      "fault", po::value(&faults)->composing(),
      "KIND:COUNT[:PARAM], repeatable: faults for the first data requests "
      "(429 500 503 slow truncate malformed graphql_error; PARAM: retry_after or delay_ms)");
  auto usage = [&](const std::string& message) {
    std::cerr << "upstream_sim: " << message << "\n" << desc;
    std::exit(2);
  };
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc;
      std::exit(0);
    }
  } catch (const po::error& e) {
    usage(e.what());
  }
  if (cli.port < 0 || cli.port > 65535) usage("--port must be 0 to 65535");
  if (cli.options.size < 1 || cli.options.size > 1'000'000) usage("--size must be 1 to 1000000");
  if (cli.options.token_ttl_s < 0) usage("--token-ttl must be >= 0");
  if (cli.options.bad_percent < 0 || cli.options.bad_percent > 100)
    usage("--bad-records must be 0 to 100");
  for (std::size_t at = 0; at < bad_kinds.size();) {
    auto comma = bad_kinds.find(',', at);
    auto kind = bad_kinds.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    if (std::find(bad::kKinds.begin(), bad::kKinds.end(), kind) == bad::kKinds.end())
      usage("--bad-kinds: unknown kind '" + kind + "'");
    cli.options.bad_kinds.push_back(kind);
    at = comma == std::string::npos ? bad_kinds.size() : comma + 1;
  }
  if (cli.options.random_faults.percent < 0 || cli.options.random_faults.percent > 100)
    usage("--fault-rate must be 0 to 100");
  if (cli.options.random_faults.delay_ms < 0) usage("--fault-delay must be >= 0");
  if (cli.options.churn_per_second < 0 || cli.options.churn_per_second > 100'000)
    usage("--churn must be 0 to 100000");
  if (cli.threads < 1 || cli.threads > 64) usage("--threads must be 1 to 64");
  auto parsed = parse_auth(auth);
  if (!parsed)
    usage("--auth " + auth + ": expected none, bearer:T, apikey:H:V or oauth2:ID:SECRET");
  cli.options.auth = *parsed;
  for (const auto& spec : faults) {
    auto f = parse_fault(spec);
    if (!f) usage("--fault " + spec + ": expected KIND:COUNT[:PARAM]");
    cli.options.faults.push_back(*f);
  }
  return cli;
}

}  // namespace

int main(int argc, char** argv) {
  Cli cli = parse_cli(argc, argv);
  App app(cli.options);  // declared before ioc: sessions destroyed with ioc still use it
  boost::asio::io_context ioc(cli.threads);
  unsigned short port = 0;
  try {
    port = start_server(ioc, static_cast<unsigned short>(cli.port), app);
  } catch (const std::exception& e) {
    std::cerr << "upstream_sim: cannot listen on 127.0.0.1:" << cli.port << ": " << e.what()
              << "\n";
    return 1;
  }
  app.set_port(port);

  // Stopping the io_context abandons open connections at once: a fake upstream owes its
  // clients nothing, and tests need it gone in well under a second.
  boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });

  std::cout << "listening 127.0.0.1:" << port << std::endl;  // endl flushes: a pipe reads it

  std::vector<std::thread> pool;
  for (int i = 1; i < cli.threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  return 0;
}
