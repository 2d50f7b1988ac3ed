// Content hashes of staged records: MD5 of the minified record text, the same value as
// Postgres' md5(text), so an operator can recompute one in SQL. Used for deduplication,
// not for security.
#pragma once

#include <string>
#include <string_view>

namespace ingestd {

struct Digest {
  unsigned char bytes[16];
  [[nodiscard]] std::string hex() const;
  bool operator==(const Digest&) const = default;
};

[[nodiscard]] Digest md5(std::string_view data);

struct DigestHash {
  std::size_t operator()(const Digest& d) const noexcept {
    std::size_t h;
    static_assert(sizeof h <= sizeof d.bytes);
    __builtin_memcpy(&h, d.bytes, sizeof h);
    return h;
  }
};

}  // namespace ingestd
