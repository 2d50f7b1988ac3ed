// Target: a REST offset answer: the body is the array (records path "", the simulator's and
// the tests' shape) or an envelope whose `data` member holds it (records path "data").
// A page of page_size (2) records means another page follows. Input: the response body.
#include "tests/fuzz/fuzz_response.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ingestd::fetcher::ResponseReader bare("", "updatedAt", false);
  static ingestd::fetcher::ResponseReader enveloped("data", "updatedAt", false);
  auto body = ingestd::fuzz::as_text(data, size);
  ingestd::fuzz::fetch_one(bare, "offset", body, "", 2);
  ingestd::fuzz::fetch_one(enveloped, "offset", body, "", 2);
  return 0;
}
