// Target: a REST page answer (a JSON array; X-Total-Count is not read) for the styles `page`
// (a full page means more) and `next_link` (the Link header's rel="next" URL).
// Input: the Link header's value, a newline, then the body (no newline: all body, no Link).
#include "tests/fuzz/fuzz_response.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ingestd::fetcher::ResponseReader reader("", "updatedAt", false);
  std::string_view in = ingestd::fuzz::as_text(data, size), link;
  if (auto nl = in.find('\n'); nl != std::string_view::npos) {
    link = in.substr(0, nl);
    in.remove_prefix(nl + 1);
  }
  ingestd::fuzz::fetch_one(reader, "page", in, link, 2);
  ingestd::fuzz::fetch_one(reader, "next_link", in, link, 2);
  return 0;
}
