// What one response holds: its records (raw JSON text, verbatim), the newest updated-at
// among them, and for Relay pagination the page info. Records are located by the entity's
// `records` path, e.g. data.allUsers.edges[].node (`[]` walks an array).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "core/time.hpp"

namespace ingestd::fetcher {

struct Page {
  std::vector<std::string_view> records;  // into the parser's copy of the body
  std::optional<SysTime> newest;          // max updated-at of the records that have one
  std::size_t without_updated_at = 0;
  bool has_next = false;   // relay
  std::string end_cursor;  // relay
  // Byte sequences that were not UTF-8, each replaced by U+FFFD before parsing (0: the body
  // was read verbatim). Postgres stores UTF-8 only, and a page is never skipped for a byte:
  // the caller keeps the body as received (spool::write_received).
  std::size_t replaced = 0;
};

// The body is not what the configuration describes (not JSON, records path missing, a
// GraphQL "errors" member). Never an empty page: a run with such a page stops and retries.
struct BadResponse : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ResponseReader {
 public:
  ResponseReader(std::string_view records_path, std::string_view updated_at_path, bool relay);
  // Parses `body`; the returned records stay valid until the next call.
  Page read(std::string_view body);

 private:
  struct Segment {
    std::string name;  // empty: the value itself
    bool array = false;
  };
  void walk(simdjson::ondemand::value v, std::size_t i, Page& page);
  void emit(simdjson::ondemand::value v, Page& page);
  void read_page_info(Page& page);

  std::vector<Segment> records_;
  std::vector<Segment> connection_;  // relay: the object holding pageInfo
  std::vector<std::string> updated_at_;
  bool relay_;
  simdjson::ondemand::parser parser_;
  simdjson::padded_string buffer_;
  simdjson::ondemand::document doc_;
};

// Where a run goes after a page, per pagination style: the decision taken from the parsed page
// (relay page info, the record count) and the response's Link header. A pure function, so
// that the tests and the fuzz targets (tests/fuzz/) reach it without HTTP.
struct NextPosition {
  bool more = false;                  // another page follows
  std::optional<std::string> cursor;  // set: the run's new cursor (relay endCursor, next URL)
};
[[nodiscard]] NextPosition next_position(std::string_view pagination, const Page& page,
                                         std::string_view link_header, std::int64_t page_size);

// `Link: <url>; rel="next", <url2>; rel="last"` -> url; "" when no entry is rel="next".
[[nodiscard]] std::string next_link(std::string_view header);

}  // namespace ingestd::fetcher
