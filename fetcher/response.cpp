#include "fetcher/response.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "core/spool.hpp"

namespace ingestd::fetcher {
namespace {
using namespace simdjson;

[[noreturn]] void bad(std::string_view what, error_code e = SUCCESS) {
  if (e == SUCCESS) throw BadResponse(std::string(what));
  throw BadResponse(fmt::format("{}: {}", what, error_message(e)));
}

// `in` with every maximal ill-formed subsequence replaced by U+FFFD (Unicode 15, 3.9 "U+FFFD
// Substitution of Maximal Subparts", as browsers decode); returns how many were replaced.
std::size_t replace_invalid_utf8(std::string_view in, std::string& out) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::size_t replaced = 0;
  out.clear();
  out.reserve(in.size() + 64);
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(in[i]); };
  for (std::size_t i = 0; i < in.size();) {
    unsigned char b = byte(i);
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    std::size_t need = 0;                // continuation bytes after the lead byte
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the first of them
    if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 2;
      if (b == 0xE0) lo = 0xA0;  // no overlong forms
      if (b == 0xED) hi = 0x9F;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 3;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;  // nothing past U+10FFFF
    }
    std::size_t len = 1;  // the bytes of the sequence that fit so far
    while (len <= need && i + len < in.size()) {
      unsigned char c = byte(i + len);
      if (c < (len == 1 ? lo : 0x80) || c > (len == 1 ? hi : 0xBF)) break;
      ++len;
    }
    if (need > 0 && len == need + 1) {
      out.append(in.substr(i, len));
    } else {
      out += kReplacement;
      ++replaced;
    }
    i += len;
  }
  return replaced;
}

// "Not there" and "not that type" leave an On-Demand document usable. Any other error is a
// broken structure that simdjson treats as fatal: the iterator is abandoned, and going on
// (rewind(), reset(), raw_json()) dereferences a null parser. The body is then not JSON.
bool usable_after(error_code e) {
  return e == SUCCESS || e == NO_SUCH_FIELD || e == INCORRECT_TYPE;
}

// The structure of a whole record: brackets, commas, colons, keys, where each value starts.
// On-Demand checks only what it reads, and the stager reads other parts of a record than this
// reader (its id): a broken structure there would make it quarantine the whole page. Numbers
// are not parsed and strings not unescaped: Postgres judges those, and the stager keeps a
// record it refuses as text.
// Iterative: the containers still open are a stack (at most spool::kMaxDepth, the nesting the
// parser accepts), so a record nested 8192 deep costs no thread stack.
struct OpenContainer {
  bool object = false;
  bool started = false;  // a child was handed out: step past it before the next one
  ondemand::object_iterator field, fields_end;
  ondemand::array_iterator element, elements_end;
};
using OpenStack = std::vector<OpenContainer>;

error_code open_container(ondemand::object& o, OpenStack& stack) {
  if (stack.size() >= spool::kMaxDepth) return DEPTH_ERROR;
  OpenContainer c;
  c.object = true;
  if (auto e = o.begin().get(c.field)) return e;
  if (auto e = o.end().get(c.fields_end)) return e;
  stack.push_back(c);
  return SUCCESS;
}

error_code open_container(ondemand::array& a, OpenStack& stack) {
  if (stack.size() >= spool::kMaxDepth) return DEPTH_ERROR;
  OpenContainer c;
  if (auto e = a.begin().get(c.element)) return e;
  if (auto e = a.end().get(c.elements_end)) return e;
  stack.push_back(c);
  return SUCCESS;
}

// One value: a string is read (not unescaped: skipping a string followed by ':' would take it
// for a key), a container is opened, other scalars are left for the iterator to step over.
error_code visit(ondemand::value v, OpenStack& stack) {
  ondemand::json_type t;
  if (auto e = v.type().get(t)) return e;
  if (t == ondemand::json_type::string) {
    ondemand::raw_json_string raw;
    return v.get_raw_json_string().get(raw);
  }
  if (t == ondemand::json_type::object) {
    ondemand::object o;
    if (auto e = v.get_object().get(o)) return e;
    return open_container(o, stack);
  }
  if (t == ondemand::json_type::array) {
    ondemand::array a;
    if (auto e = v.get_array().get(a)) return e;
    return open_container(a, stack);
  }
  return SUCCESS;
}

// Depth first, in document order, as On-Demand requires: a child is finished before its parent
// steps on.
error_code check_open(OpenStack& stack) {
  while (!stack.empty()) {
    auto& c = stack.back();
    ondemand::value child;
    if (c.object) {
      if (c.started) ++c.field;
      c.started = true;
      if (!(c.field != c.fields_end)) {
        stack.pop_back();
        continue;
      }
      ondemand::field f;
      if (auto e = (*c.field).get(f)) return e;
      child = f.value();
    } else {
      if (c.started) ++c.element;
      c.started = true;
      if (!(c.element != c.elements_end)) {
        stack.pop_back();
        continue;
      }
      if (auto e = (*c.element).get(child)) return e;
    }
    if (auto e = visit(child, stack)) return e;  // may grow the stack: `c` is not used after
  }
  return SUCCESS;
}

// A record that is an object or an array. The stack is reused: no allocation per record.
template <class Container>
error_code check_structure(Container& record) {
  static thread_local OpenStack stack;
  stack.clear();
  if (auto e = open_container(record, stack)) return e;
  return check_open(stack);
}
}  // namespace

ResponseReader::ResponseReader(std::string_view records_path, std::string_view updated_at_path,
                               bool relay)
    : updated_at_(spool::split_path(updated_at_path)), relay_(relay) {
  spool::use_max_depth(parser_);
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
  auto parsed = parser_.iterate(buffer_).get(doc_);
  if (parsed == UTF8_ERROR) {
    std::string repaired;
    page.replaced = replace_invalid_utf8(body, repaired);
    buffer_ = padded_string(repaired);
    parsed = parser_.iterate(buffer_).get(doc_);
  }
  if (parsed) bad("not JSON", parsed);
  // A GraphQL server reports failures with HTTP 200 and an "errors" member.
  ondemand::object root;
  auto probe = doc_.get_object().get(root);
  if (!probe) {
    ondemand::array errors;
    probe = root.find_field_unordered("errors").get_array().get(errors);
    if (!probe) {
      for (auto err : errors) {
        std::string_view message = "(no message)";
        ondemand::object o;
        if (!err.get_object().get(o) && o.find_field_unordered("message").get_string().get(message))
          message = "(no message)";
        bad(fmt::format("GraphQL error: {}", message));
      }
    }
  }
  if (!usable_after(probe)) bad("not JSON", probe);
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
    if (auto e = check_structure(o)) bad("not JSON: a record", e);
    if (auto e = o.reset().error()) bad("not JSON", e);
    ondemand::value cur;
    auto e = o.find_field_unordered(updated_at_[0]).get(cur);
    for (std::size_t i = 1; !e && i < updated_at_.size(); ++i) {
      ondemand::object inner;
      e = cur.get_object().get(inner);
      if (!e) e = inner.find_field_unordered(updated_at_[i]).get(cur);
    }
    if (!usable_after(e)) bad("not JSON", e);
    std::string_view text;
    std::optional<SysTime> at;
    if (!e) {
      // A string that cannot be unescaped is a bad value, not a broken structure.
      auto se = cur.get_string().get(text);
      if (!se)
        at = parse_rfc3339(text);
      else if (se != STRING_ERROR && !usable_after(se))
        bad("not JSON", se);
    }
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
    if (auto e = check_structure(a)) bad("not JSON: a record", e);
    if (auto e = a.reset().error()) bad("not JSON", e);
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
  auto ce = info.find_field_unordered("endCursor").get_string().get(cursor);
  if (!ce)
    page.end_cursor = std::string(cursor);
  else if (!usable_after(ce))
    bad("relay: pageInfo.endCursor", ce);
  if (has_next && page.end_cursor.empty()) bad("relay: hasNextPage without an endCursor");
}

NextPosition next_position(std::string_view pagination, const Page& page,
                           std::string_view link_header, std::int64_t page_size) {
  NextPosition next;
  if (pagination == "relay") {
    next.more = page.has_next;
    if (!page.end_cursor.empty()) next.cursor = page.end_cursor;
  } else if (pagination == "next_link") {
    next.cursor = next_link(link_header);
    next.more = !next.cursor->empty();
  } else if (pagination != "none") {
    // page_number, page, offset: a short page is the last one
    next.more = static_cast<std::int64_t>(page.records.size()) >= page_size;
  }
  return next;
}

namespace {

// Whether a link's parameters (`; rel="next"; title=...`) give it the relation "next". The
// rel value is a token or a quoted, space-separated list (RFC 8288); names compare without
// case. "nextpage" or title="next" are not "next".
bool is_rel_next(std::string_view params) {
  auto lower = [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  auto equal_nocase = [&](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [&](char x, char y) { return lower(x) == lower(y); });
  };
  auto trim = [](std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
  };
  while (!params.empty()) {
    auto semi = params.find(';');
    auto param = trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    auto eq = param.find('=');
    if (eq == std::string_view::npos || !equal_nocase(trim(param.substr(0, eq)), "rel")) continue;
    auto value = trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    while (!value.empty()) {
      auto space = value.find(' ');
      if (equal_nocase(value.substr(0, space), "next")) return true;
      value = space == std::string_view::npos ? std::string_view() : trim(value.substr(space));
    }
  }
  return false;
}

}  // namespace

std::string next_link(std::string_view header) {
  std::size_t pos = 0;
  while ((pos = header.find('<', pos)) != std::string_view::npos) {
    auto close = header.find('>', pos);
    if (close == std::string_view::npos) break;
    auto next_entry = header.find('<', close);
    // The parameters of this link: up to the comma before the next one (or the next '<').
    auto params =
        header.substr(close + 1, next_entry == std::string_view::npos ? std::string_view::npos
                                                                      : next_entry - close - 1);
    if (auto comma = params.rfind(',');
        comma != std::string_view::npos && next_entry != std::string_view::npos)
      params = params.substr(0, comma);
    if (is_rel_next(params)) return std::string(header.substr(pos + 1, close - pos - 1));
    pos = close;
  }
  return "";
}

}  // namespace ingestd::fetcher
