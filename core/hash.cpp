#include "core/hash.hpp"

#include <cstdint>
#include <cstring>
#include <vector>

#include <boost/uuid/detail/md5.hpp>

namespace ingestd {

Digest md5(std::string_view data) {
  // Boost's md5 reads its input as 32-bit words: from an unaligned address that is undefined
  // behaviour (UBSan reports it), so the bytes are hashed from an aligned copy.
  thread_local std::vector<std::uint64_t> aligned;
  aligned.resize(data.size() / sizeof(std::uint64_t) + 1);
  std::memcpy(aligned.data(), data.data(), data.size());
  boost::uuids::detail::md5 h;
  h.process_bytes(aligned.data(), data.size());
  boost::uuids::detail::md5::digest_type words;
  h.get_digest(words);
  // Boost hands the digest out as four native words holding big-endian-read bytes;
  // writing each word most significant byte first gives the standard byte order.
  Digest d;
  for (int i = 0; i < 4; ++i) {
    auto w = static_cast<unsigned>(words[i]);
    d.bytes[i * 4 + 0] = static_cast<unsigned char>(w >> 24);
    d.bytes[i * 4 + 1] = static_cast<unsigned char>(w >> 16);
    d.bytes[i * 4 + 2] = static_cast<unsigned char>(w >> 8);
    d.bytes[i * 4 + 3] = static_cast<unsigned char>(w);
  }
  return d;
}

std::string Digest::hex() const {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[i * 2] = digits[bytes[i] >> 4];
    s[i * 2 + 1] = digits[bytes[i] & 15];
  }
  return s;
}

}  // namespace ingestd
