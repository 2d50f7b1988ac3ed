// What the fuzz targets share: reading a spool file the way the stager does, and writing a
// page the way the fetcher does, with the checks that turn a broken contract into a crash
// libFuzzer reports (docs/FUZZING.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ingestd::fuzz {

// A broken contract: prints `what` and aborts, which libFuzzer records as a crash.
[[noreturn]] void violated(std::string_view what);

// The input as text.
[[nodiscard]] inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Reads `bytes` as the stager does: spool::PageReader, then every record, then again after a
// rewind (a retried load reads the file again from memory), with the entity's id path
// `id_path` (dotted). Returns the number of records, or nullopt (and the reason in `error`)
// when the reader refuses the file, in its envelope or in a record: the stager quarantines
// it. Checks that both passes agree and that every record has an external id or a reason to
// reject it, never both.
std::optional<std::size_t> read_spool(std::string bytes, std::string_view id_path,
                                      std::string* error = nullptr);

// Writes `records` as one spool page with spool::write_page (into a private directory on
// tmpfs), reads the file back and removes it. Checks that the stager reads the page whole:
// a page the fetcher accepted and wrote must never be quarantined or lose a record.
void spool_round_trip(const std::vector<std::string_view>& records);

}  // namespace ingestd::fuzz
