// Which content an entity's staging table may already hold (internal to staging/).
//
// A Bloom filter over stg_<entity>.content_hash, filled from the table when the process
// starts and with every hash this process stages. A hash it has never seen is certainly not
// in the table as this process knows it, so that record skips the index probe before the
// COPY; a hash it may have seen is checked in the database as before. The unique index stays
// the arbiter: content staged meanwhile by another process makes the COPY fail, and the
// batch is then redone with every hash checked. Until it is built, it answers "maybe".
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/hash.hpp"

namespace ingestd::pg {
class Connection;
}

namespace ingestd::staging {

class KnownFilter {
 public:
  // Reads every content hash of `table` (quoted) once per process; later calls return at
  // once. Throws pg::Error when the database fails (the filter then stays unbuilt).
  void build_once(pg::Connection& conn, const std::string& table);
  void add(const Digest& d);
  [[nodiscard]] bool maybe_contains(const Digest& d) const;
  [[nodiscard]] bool built() const { return built_.load(std::memory_order_acquire); }
  [[nodiscard]] std::size_t bytes() const { return words_ * 8; }

 private:
  void size_for(std::size_t entries);
  void set(const Digest& d);
  template <class F>
  void for_each_bit(const Digest& d, F&& f) const;

  static constexpr int kHashes = 7;  // with 10 bits per entry: ~1% false positives
  std::mutex build_mu_;
  std::atomic<bool> built_{false};
  std::unique_ptr<std::atomic<std::uint64_t>[]> bits_;
  std::size_t words_ = 0;
};

}  // namespace ingestd::staging
