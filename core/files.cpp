#include "core/files.hpp"

#include <fstream>

namespace ingestd {

std::optional<std::string> read_file(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // Regular files and pipes (/dev/stdin, <(...)) only: a directory opens as a stream but its
  // "size" is no size, and a device such as /dev/zero or a terminal never ends.
  auto st = fs::status(path, ec);
  if (ec || !(fs::is_regular_file(st) || fs::is_fifo(st))) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  // Read to the end rather than trust the size: a pipe has none, a file in /proc says 0, and
  // a file may change between the two.
  auto size = fs::is_regular_file(st) ? fs::file_size(path, ec) : 0;
  std::string bytes(ec ? 0 : static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  char chunk[1 << 16];
  while (in) {
    in.read(chunk, sizeof chunk);
    bytes.append(chunk, static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return std::nullopt;
  return bytes;
}

}  // namespace ingestd
