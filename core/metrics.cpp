#include "core/metrics.hpp"

#include <dirent.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

#include <fmt/format.h>
#include <prometheus/text_serializer.h>

namespace ingestd::metrics {
namespace {

struct Families {
  prometheus::Registry registry;
  prometheus::Family<prometheus::Counter>& records =
      prometheus::BuildCounter()
          .Name("ingestd_records_total")
          .Help("Records leaving a stage, by outcome")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& stage_runs =
      prometheus::BuildCounter()
          .Name("ingestd_stage_runs_total")
          .Help("Runs finished by this process, by status")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& spool_files =
      prometheus::BuildCounter()
          .Name("ingestd_spool_files_total")
          .Help("Spool files handled by the stager, by outcome")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& upstream_requests =
      prometheus::BuildCounter()
          .Name("ingestd_upstream_requests_total")
          .Help("Upstream HTTP requests, by status class (error: no HTTP answer)")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& throttled =
      prometheus::BuildCounter()
          .Name("ingestd_upstream_throttled_seconds_total")
          .Help("Seconds spent waiting for the rate limit or a Retry-After")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& retries =
      prometheus::BuildCounter()
          .Name("ingestd_upstream_retries_total")
          .Help("Upstream requests retried after a failure")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& pages =
      prometheus::BuildCounter()
          .Name("ingestd_fetch_pages_total")
          .Help("Pages durably written to the spool")
          .Register(registry);
  prometheus::Family<prometheus::Counter>& placeholders =
      prometheus::BuildCounter()
          .Name("ingestd_placeholders_created_total")
          .Help("Placeholder rows created for unknown references, by referenced entity")
          .Register(registry);
  prometheus::Family<prometheus::Histogram>& batch =
      prometheus::BuildHistogram()
          .Name("ingestd_batch_duration_seconds")
          .Help("Duration of one stager transaction or reconciler batch")
          .Register(registry);
};

Families& families() {
  static Families f;
  return f;
}

std::string label(std::string_view v) { return std::string(v); }

// /proc/self/stat fields 14 (utime), 15 (stime), 22 (starttime), 24 (rss pages).
struct ProcStat {
  double cpu_seconds = 0, start_time = 0, rss_bytes = 0;
};

ProcStat read_proc_stat() {
  ProcStat out;
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return out;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  std::vector<std::string> f;  // f[0] is field 3 (state)
  while (rest >> field) f.push_back(field);
  if (f.size() < 22) return out;
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  out.cpu_seconds = (std::stod(f[11]) + std::stod(f[12])) / tick;
  out.rss_bytes = std::stod(f[21]) * static_cast<double>(sysconf(_SC_PAGESIZE));
  double boot = 0;
  std::ifstream st("/proc/stat");
  for (std::string line; std::getline(st, line);)
    if (line.rfind("btime ", 0) == 0) boot = std::stod(line.substr(6));
  out.start_time = boot + std::stod(f[19]) / tick;
  return out;
}

double open_fds() {
  double n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++n;
    closedir(d);
    --n;  // the descriptor opendir itself holds
  }
  return n;
}

}  // namespace

prometheus::Registry& registry() { return families().registry; }

std::string exposition() {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry().Collect());
  ProcStat p = read_proc_stat();
  auto gauge = [&out](std::string_view name, std::string_view type, std::string_view help,
                      double v) {
    out << fmt::format("# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}\n", name, help, type, v);
  };
  gauge("ingestd_process_cpu_seconds_total", "counter", "User and system CPU time spent",
        p.cpu_seconds);
  gauge("ingestd_process_resident_memory_bytes", "gauge", "Resident memory size", p.rss_bytes);
  gauge("ingestd_process_open_fds", "gauge", "Open file descriptors", open_fds());
  gauge("ingestd_process_start_time_seconds", "gauge", "Start time since the Unix epoch",
        p.start_time);
  return out.str();
}

prometheus::Counter& records(std::string_view stage, std::string_view entity,
                             std::string_view outcome) {
  return families().records.Add(
      {{"stage", label(stage)}, {"entity", label(entity)}, {"outcome", label(outcome)}});
}

prometheus::Counter& stage_runs(std::string_view stage, std::string_view entity,
                                std::string_view status) {
  return families().stage_runs.Add(
      {{"stage", label(stage)}, {"entity", label(entity)}, {"status", label(status)}});
}

prometheus::Counter& spool_files(std::string_view entity, std::string_view outcome) {
  return families().spool_files.Add({{"entity", label(entity)}, {"outcome", label(outcome)}});
}

std::string_view status_class(long s) {
  if (s == 429) return "429";
  if (s >= 200 && s < 300) return "2xx";
  if (s >= 300 && s < 400) return "3xx";
  if (s >= 400 && s < 500) return "4xx";
  if (s >= 500 && s < 600) return "5xx";
  return "error";
}

prometheus::Counter& upstream_requests(std::string_view entity, long http_status) {
  return families().upstream_requests.Add(
      {{"entity", label(entity)}, {"status", label(status_class(http_status))}});
}

prometheus::Counter& upstream_throttled_seconds(std::string_view entity) {
  return families().throttled.Add({{"entity", label(entity)}});
}

prometheus::Counter& upstream_retries(std::string_view entity) {
  return families().retries.Add({{"entity", label(entity)}});
}

prometheus::Counter& fetch_pages(std::string_view entity) {
  return families().pages.Add({{"entity", label(entity)}});
}

prometheus::Counter& placeholders_created(std::string_view entity) {
  return families().placeholders.Add({{"entity", label(entity)}});
}

prometheus::Histogram& batch_seconds(std::string_view stage) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return families().batch.Add({{"stage", label(stage)}}, kBuckets);
}

}  // namespace ingestd::metrics
