#include "fetcher/page_writer.hpp"

#include "core/metrics.hpp"

#include "core/failpoint.hpp"

namespace ingestd::fetcher {

namespace {
// A fast upstream delivers a page about every millisecond: 2 ms gathers a few. Measured
// (tests/bench/fetch_bench.sh setting): 4 % less time for 200,000 records; the pages become
// visible to the stager at most 2 ms later.
constexpr std::chrono::milliseconds kGroupWait{2};
}  // namespace

PageWriter::PageWriter(const config::Config& config, const config::Entity& entity, Checkpoint& cp,
                       Metrics& metrics, std::size_t max_queued)
    : config_(config),
      entity_(entity),
      cp_(cp),
      metrics_(metrics),
      max_queued_(max_queued),
      thread_([this] { loop(); }) {}

PageWriter::~PageWriter() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool PageWriter::push(QueuedPage page) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return queue_.size() < max_queued_ || error_; });
  if (error_) return false;
  queue_.push_back(std::move(page));
  cv_.notify_all();
  return true;
}

void PageWriter::finish() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (error_) std::rethrow_exception(error_);
}

void PageWriter::loop() {
  auto dir = spool::incoming_dir(config_.spool_dir, entity_.name);
  for (;;) {
    std::deque<QueuedPage> group;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !queue_.empty() || closing_; });
      if (queue_.empty()) return;
      // Group commit: a page that comes alone waits a moment for company, so that one
      // directory fsync and one checkpoint cover several pages (each page still has its own
      // file fsync). At the end of a run (closing_) nobody waits.
      cv_.wait_for(lock, kGroupWait, [&] { return queue_.size() >= max_queued_ / 2 || closing_; });
      group.swap(queue_);
    }
    cv_.notify_all();  // room in the queue again
    try {
      std::int64_t records = 0;
      bool wrote = false;
      for (const auto& p : group) {
        // An empty page is written too (a run whose records fill its pages exactly ends with
        // one): the run_end counts every page, and readers of ingestd_fetch_runs compare that
        // count with the ledger's.
        std::vector<std::string_view> views;
        views.reserve(p.spans.size());
        for (auto [off, len] : p.spans) views.emplace_back(p.blob.data() + off, len);
        spool::write_page(config_.spool_dir, p.meta, views, /*sync_dir=*/false);
        wrote = true;
        records += static_cast<std::int64_t>(p.spans.size());
        failpoint("fetcher.after_spool");
      }
      if (wrote) spool::sync_directory(dir);
      cp_.current = group.back().after;
      save_checkpoint(config_.fetcher_state_dir, entity_.name, cp_);
      failpoint("fetcher.after_checkpoint");
      metrics_.pages += static_cast<std::int64_t>(group.size());
      metrics_.records += records;
      metrics::fetch_pages(entity_.name).Increment(static_cast<double>(group.size()));
      metrics::records("fetcher", entity_.name, "fetched").Increment(static_cast<double>(records));
    } catch (...) {
      std::lock_guard lock(mu_);
      error_ = std::current_exception();
      queue_.clear();
      cv_.notify_all();
      return;
    }
  }
}

}  // namespace ingestd::fetcher
