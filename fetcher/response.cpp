#include "fetcher/response.hpp"

#include <fmt/format.h>

#include "core/spool.hpp"

namespace ingestd::fetcher {
namespace {
using namespace simdjson;

[[noreturn]] void bad(std::string_view what, error_code e = SUCCESS) {
  if (e == SUCCESS) throw BadResponse(std::string(what));
  throw BadResponse(fmt::format("{}: {}", what, error_message(e)));
}
}  // namespace

ResponseReader::ResponseReader(std::string_view records_path, std::string_view updated_at_path,
                               bool relay)
    : updated_at_(spool::split_path(updated_at_path)), relay_(relay) {
  if (records_path.empty()) {
    records_.push_back({"", true});
  } else {
    for (auto& part : spool::split_path(records_path)) {
      bool array = part.size() >= 2 && part.ends_with("[]");
      if (array) part.resize(part.size() - 2);
      records_.push_back({part, array});
    }
  }
  if (relay_) {
    // data.allUsers.edges[].node -> data.allUsers holds pageInfo
    for (const auto& s : records_) {
      if (s.name == "edges") break;
      connection_.push_back(s);
    }
    if (connection_.size() == records_.size())
      throw std::invalid_argument(fmt::format(
          "relay pagination needs a records path through edges[], got '{}'", records_path));
  }
}

Page ResponseReader::read(std::string_view body) {
  buffer_ = padded_string(body);
  Page page;
  if (auto e = parser_.iterate(buffer_).get(doc_)) bad("not JSON", e);
  // A GraphQL server reports failures with HTTP 200 and an "errors" member.
  ondemand::object root;
  if (!doc_.get_object().get(root)) {
    ondemand::array errors;
    if (!root.find_field_unordered("errors").get_array().get(errors)) {
      for (auto err : errors) {
        std::string_view message = "(no message)";
        ondemand::object o;
        if (!err.get_object().get(o) && o.find_field_unordered("message").get_string().get(message))
          message = "(no message)";
        bad(fmt::format("GraphQL error: {}", message));
      }
    }
  }
  doc_.rewind();
  ondemand::value top;
  if (auto e = doc_.get_value().get(top)) bad("not JSON", e);
  walk(top, 0, page);
  if (relay_) read_page_info(page);
  return page;
}

void ResponseReader::walk(ondemand::value v, std::size_t i, Page& page) {
  if (i == records_.size()) {
    emit(v, page);
    return;
  }
  const auto& seg = records_[i];
  ondemand::value target = v;
  if (!seg.name.empty()) {
    ondemand::object o;
    if (auto e = v.get_object().get(o))
      bad(fmt::format("records path: '{}' is not inside an object", seg.name), e);
    if (auto e = o.find_field_unordered(seg.name).get(target))
      bad(fmt::format("records path: no field '{}'", seg.name), e);
  }
  ondemand::json_type t;
  if (auto e = target.type().get(t)) bad("not JSON", e);
  bool last = i + 1 == records_.size();
  if (seg.array || (last && t == ondemand::json_type::array)) {
    ondemand::array arr;
    if (auto e = target.get_array().get(arr))
      bad(fmt::format("records path: '{}' is not an array", seg.name), e);
    for (auto el : arr) {
      ondemand::value ev;
      if (auto e = el.get(ev)) bad("not JSON", e);
      if (seg.array)
        walk(ev, i + 1, page);
      else
        emit(ev, page);
    }
    return;
  }
  if (t == ondemand::json_type::null) bad(fmt::format("records path: '{}' is null", seg.name));
  walk(target, i + 1, page);
}

void ResponseReader::emit(ondemand::value v, Page& page) {
  ondemand::json_type t;
  if (auto e = v.type().get(t)) bad("not JSON", e);
  std::string_view raw;
  if (t == ondemand::json_type::object) {
    ondemand::object o;
    if (auto e = v.get_object().get(o)) bad("not JSON", e);
    ondemand::value cur;
    auto e = o.find_field_unordered(updated_at_[0]).get(cur);
    for (std::size_t i = 1; !e && i < updated_at_.size(); ++i) {
      ondemand::object inner;
      e = cur.get_object().get(inner);
      if (!e) e = inner.find_field_unordered(updated_at_[i]).get(cur);
    }
    std::string_view text;
    std::optional<SysTime> at;
    if (!e && !cur.get_string().get(text)) at = parse_rfc3339(text);
    if (at) {
      if (!page.newest || *at > *page.newest) page.newest = at;
    } else {
      ++page.without_updated_at;
    }
    if (auto e2 = o.reset().error()) bad("not JSON", e2);
    if (auto e2 = o.raw_json().get(raw)) bad("not JSON", e2);
  } else if (t == ondemand::json_type::array) {
    ondemand::array a;
    if (auto e = v.get_array().get(a)) bad("not JSON", e);
    if (auto e = a.raw_json().get(raw)) bad("not JSON", e);
    ++page.without_updated_at;
  } else {
    raw = v.raw_json_token();
    ++page.without_updated_at;
  }
  page.records.push_back(raw);
}

void ResponseReader::read_page_info(Page& page) {
  doc_.rewind();
  ondemand::value v;
  if (auto e = doc_.get_value().get(v)) bad("not JSON", e);
  for (const auto& seg : connection_) {
    ondemand::object o;
    if (auto e = v.get_object().get(o)) bad("relay: connection is not an object", e);
    if (auto e = o.find_field_unordered(seg.name).get(v)) bad("relay: connection missing", e);
  }
  ondemand::object conn, info;
  if (auto e = v.get_object().get(conn)) bad("relay: connection is not an object", e);
  if (auto e = conn.find_field_unordered("pageInfo").get_object().get(info))
    bad("relay: no pageInfo", e);
  bool has_next = false;
  if (auto e = info.find_field_unordered("hasNextPage").get_bool().get(has_next))
    bad("relay: no pageInfo.hasNextPage", e);
  page.has_next = has_next;
  // The end cursor is kept even on the last page: a run resumed after its last page was
  // checkpointed must continue after it, not start over (null on an empty page).
  std::string_view cursor;
  auto c = info.find_field_unordered("endCursor");
  if (!c.get_string().get(cursor)) page.end_cursor = std::string(cursor);
  if (has_next && page.end_cursor.empty()) bad("relay: hasNextPage without an endCursor");
}

}  // namespace ingestd::fetcher
