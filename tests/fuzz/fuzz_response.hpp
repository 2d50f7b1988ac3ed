// The response targets: one upstream answer handled as Fetcher::continue_run handles it
// (fetcher/response.cpp: ResponseReader::read for the records, the newest updated-at and
// the relay page info; next_position for where the run goes next), then written to the spool
// with spool::write_page and read back as the stager reads it.
#pragma once

#include <string_view>

#include "fetcher/response.hpp"
#include "tests/fuzz/support.hpp"

namespace ingestd::fuzz {

inline void fetch_one(fetcher::ResponseReader& reader, std::string_view pagination,
                      std::string_view body, std::string_view link_header, std::int64_t page_size) {
  fetcher::Page page;
  try {
    page = reader.read(body);
  } catch (const fetcher::BadResponse&) {
    return;  // the fetcher retries the page, then fails the run: nothing reaches the spool
  }
  if (page.without_updated_at > page.records.size())
    violated("more records without an updated-at than records");
  auto next = fetcher::next_position(pagination, page, link_header, page_size);
  if (next.more && pagination == "relay" && (!next.cursor || next.cursor->empty()))
    violated("relay: another page but no cursor to ask for it");
  if (pagination == "next_link" && next.more != (next.cursor && !next.cursor->empty()))
    violated("next_link: 'more' and the next URL disagree");
  spool_round_trip(page.records);
}

}  // namespace ingestd::fuzz
