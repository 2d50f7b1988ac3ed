// Target: a spool file as the stager reads it (core/spool.cpp: spool::PageReader, the
// envelope, the run_summary object, every record and its external id), once with the id path
// of a flat record and once with a nested one. Input: the file's bytes.
#include "tests/fuzz/support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(ingestd::fuzz::as_text(data, size));
  (void)ingestd::fuzz::read_spool(bytes, "id");
  (void)ingestd::fuzz::read_spool(std::move(bytes), "client.id");
  return 0;
}
