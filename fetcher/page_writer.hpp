// Makes a run's fetched pages durable, in order, a group at a time (internal to fetcher/).
//
// The fetching thread queues each page with the run position after it and goes on fetching;
// this writer thread writes every queued page (file fsync + rename), then one directory
// fsync and one checkpoint cover the whole group. A checkpoint therefore never names a page
// that is not durable, and the disk's fsync latency is paid once per group instead of three
// times per page.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/config.hpp"
#include "core/spool.hpp"
#include "fetcher/checkpoint.hpp"
#include "fetcher/fetcher.hpp"

namespace ingestd::fetcher {

struct QueuedPage {
  spool::Meta meta;
  std::string blob;                                        // the records, back to back
  std::vector<std::pair<std::size_t, std::size_t>> spans;  // offset, length in blob
  RunState after;                                          // the run's position once it is durable
};

class PageWriter {
 public:
  PageWriter(const config::Config& config, const config::Entity& entity, Checkpoint& cp,
             Metrics& metrics, std::size_t max_queued = 16);
  ~PageWriter();
  PageWriter(const PageWriter&) = delete;
  PageWriter& operator=(const PageWriter&) = delete;

  // Blocks while max_queued pages wait; false once the writer has failed.
  bool push(QueuedPage page);
  // Waits until every queued page is durable and checkpointed; rethrows the writer's error.
  void finish();

 private:
  void loop();

  const config::Config& config_;
  const config::Entity& entity_;
  Checkpoint& cp_;  // written only by the writer thread until finish() returns
  Metrics& metrics_;
  std::size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<QueuedPage> queue_;
  bool closing_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace ingestd::fetcher
