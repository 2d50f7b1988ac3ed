// Target: a GraphQL page-number answer ({"data":{"allTimelineEntries":[...],
// "_allTimelineEntriesMeta":{"count":N}}}) with the records path data.allTimelineEntries;
// a page of page_size (2) records means another page follows. Input: the response body.
#include "tests/fuzz/fuzz_response.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ingestd::fetcher::ResponseReader reader("data.allTimelineEntries", "updatedAt", false);
  ingestd::fuzz::fetch_one(reader, "page_number", ingestd::fuzz::as_text(data, size), "", 2);
  return 0;
}
