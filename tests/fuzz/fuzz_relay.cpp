// Target: a GraphQL Relay answer ({"data":{"allClients":{"pageInfo":{...},"edges":[{"node":
// {...}}]}}}, or {"errors":[...]}) with the records path data.allClients.edges[].node.
// Input: the response body.
#include "tests/fuzz/fuzz_response.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static ingestd::fetcher::ResponseReader reader("data.allClients.edges[].node", "updatedAt", true);
  ingestd::fuzz::fetch_one(reader, "relay", ingestd::fuzz::as_text(data, size), "", 2);
  return 0;
}
