#include "staging/known_filter.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/log.hpp"
#include "core/pg.hpp"

namespace ingestd::staging {
namespace {
constexpr std::size_t kMinEntries = 4u << 20;   // 5 MB
constexpr std::size_t kMaxEntries = 32u << 20;  // 40 MB: beyond, false positives grow
constexpr int kPage = 100'000;

bool parse_hex_digest(std::string_view hex, Digest& out) {
  if (hex.size() != 32) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (int i = 0; i < 16; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.bytes[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}
}  // namespace

void KnownFilter::size_for(std::size_t entries) {
  entries = std::clamp(entries, kMinEntries, kMaxEntries);
  words_ = entries * 10 / 64 + 1;
  bits_ = std::make_unique<std::atomic<std::uint64_t>[]>(words_);
  for (std::size_t i = 0; i < words_; ++i) bits_[i].store(0, std::memory_order_relaxed);
}

// The digest is already uniformly random (md5): its two halves give the k bit positions
// (Kirsch and Mitzenmacher's double hashing).
template <class F>
void KnownFilter::for_each_bit(const Digest& d, F&& f) const {
  std::uint64_t h1, h2;
  std::memcpy(&h1, d.bytes, 8);
  std::memcpy(&h2, d.bytes + 8, 8);
  std::uint64_t nbits = words_ * 64;
  for (int i = 0; i < kHashes; ++i) {
    std::uint64_t bit = (h1 + static_cast<std::uint64_t>(i) * (h2 | 1)) % nbits;
    f(bit / 64, std::uint64_t{1} << (bit % 64));
  }
}

void KnownFilter::add(const Digest& d) {
  if (!built()) return;
  set(d);
}

void KnownFilter::set(const Digest& d) {
  for_each_bit(d, [&](std::size_t w, std::uint64_t mask) {
    bits_[w].fetch_or(mask, std::memory_order_relaxed);
  });
}

bool KnownFilter::maybe_contains(const Digest& d) const {
  if (!built()) return true;
  bool all = true;
  for_each_bit(d, [&](std::size_t w, std::uint64_t mask) {
    all = all && (bits_[w].load(std::memory_order_relaxed) & mask);
  });
  return all;
}

void KnownFilter::build_once(pg::Connection& conn, const std::string& table) {
  std::lock_guard lock(build_mu_);
  if (built()) return;
  auto estimate = conn.query(
      "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass", table);
  auto rows = estimate.rows() ? static_cast<std::size_t>(estimate.get_int(0, 0)) : 0;
  size_for(rows * 2);
  // Keyset pages over the primary key: an index-only scan, bounded memory, any table size.
  std::string first = fmt::format(
      "SELECT replace(content_hash::text, '-', '') FROM {} ORDER BY content_hash LIMIT {}", table,
      kPage);
  std::string next = fmt::format(
      "SELECT replace(content_hash::text, '-', '') FROM {} WHERE content_hash > $1::uuid "
      "ORDER BY content_hash LIMIT {}",
      table, kPage);
  std::size_t loaded = 0;
  std::string after;
  for (;;) {
    auto r = after.empty() ? conn.exec(first) : conn.query(next, after);
    Digest d{};
    for (int i = 0; i < r.rows(); ++i)
      if (parse_hex_digest(r.get(i, 0), d)) set(d);
    loaded += static_cast<std::size_t>(r.rows());
    if (r.rows() < kPage) break;
    after = std::string(r.get(r.rows() - 1, 0));
  }
  // Only now may a "no" be trusted; no load of this entity runs before this returns.
  built_.store(true, std::memory_order_release);
  log::info("stager.filter_built", "table={} hashes={} bytes={}", table, loaded, bytes());
}

}  // namespace ingestd::staging
