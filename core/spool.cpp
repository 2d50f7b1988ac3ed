#include "core/spool.hpp"

#include "core/json_text.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <system_error>

#include <fmt/format.h>

namespace ingestd::spool {
namespace {

[[noreturn]] void throw_errno(std::string_view what, const fs::path& p) {
  throw std::system_error(errno, std::generic_category(), fmt::format("{} {}", what, p.string()));
}

void fsync_path(const fs::path& p, int flags) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open", p);
  if (::fsync(fd) != 0) {
    ::close(fd);
    throw_errno("cannot fsync", p);
  }
  ::close(fd);
}

bool safe_name_part(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

// 20261126T110634.123456Z: sorts like time, safe in a file name.
std::string compact_time(SysTime t) {
  std::string s = format_rfc3339(t);
  s.erase(std::remove_if(s.begin(), s.end(), [](char c) { return c == '-' || c == ':'; }), s.end());
  return s;
}

std::string file_name(const Meta& m, std::string_view what) {
  if (!safe_name_part(m.run_id))
    throw std::invalid_argument(fmt::format("run id '{}' is not file-name safe", m.run_id));
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  // The random tail makes a name unique even when a crashed run rewrites the same page:
  // the ledger keys on the name, so a rewritten page is loaded, never mistaken for a replay.
  return fmt::format("{}_{}_{}_{:08x}.json", compact_time(m.fetched_at), m.run_id, what,
                     static_cast<std::uint32_t>(rng()));
}

std::string_view kind_name(Kind k) {
  switch (k) {
    case Kind::page:
      return "page";
    case Kind::run_end:
      return "run_end";
    case Kind::run_summary:
      return "run_summary";
  }
  return "page";
}

std::string envelope_head(const Meta& m) {
  std::string out = fmt::format(
      "{{\"ingestd_spool\":{},\"kind\":{},\"source\":{},\"entity\":{},\"run_id\":{},"
      "\"mode\":{},\"page\":{},\"fetched_at\":{},\"api_version\":{}",
      kFormatVersion, json_quote(kind_name(m.kind)), json_quote(m.source), json_quote(m.entity),
      json_quote(m.run_id), json_quote(m.mode), m.page, json_quote(format_rfc3339(m.fetched_at)),
      m.api_version ? json_quote(*m.api_version) : "null");
  return out;
}

}  // namespace

fs::path incoming_dir(const fs::path& spool, std::string_view entity) {
  return spool / "incoming" / std::string(entity);
}

fs::path archive_dir(const fs::path& spool, std::string_view entity, SysTime day) {
  return spool / "archive" / std::string(entity) / format_rfc3339(day).substr(0, 10);
}

fs::path quarantine_dir(const fs::path& spool, std::string_view entity) {
  return spool / "quarantine" / std::string(entity);
}

void write_atomically(const fs::path& final_path, std::string_view bytes, bool sync_dir) {
  fs::path dir = final_path.parent_path();
  fs::create_directories(dir);
  fs::path tmp = dir / fmt::format(".{}.tmp", final_path.filename().string());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) throw_errno("cannot create", tmp);
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      ::unlink(tmp.c_str());
      throw_errno("cannot write", tmp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw_errno("cannot fsync", tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) throw_errno("cannot rename", tmp);
  if (sync_dir) fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

void sync_directory(const fs::path& dir) {
  fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

fs::path write_page(const fs::path& spool, const Meta& meta,
                    const std::vector<std::string_view>& records, bool sync_dir) {
  std::size_t total = 256;
  for (auto r : records) total += r.size() + 1;
  std::string out;
  out.reserve(total);
  out += envelope_head(meta);
  out += ",\"records\":[";
  for (std::size_t i = 0; i < records.size(); ++i) {
    if (i) out += ',';
    out += records[i];
  }
  out += "]}\n";
  fs::path path =
      incoming_dir(spool, meta.entity) / file_name(meta, fmt::format("p{:06}", meta.page));
  write_atomically(path, out, sync_dir);
  return path;
}

fs::path write_run_end(const fs::path& spool, const Meta& meta) {
  Meta m = meta;
  m.kind = Kind::run_end;
  std::string out = envelope_head(m);
  out += fmt::format(",\"pages\":{},\"records\":{}}}\n", m.pages, m.records);
  fs::path path = incoming_dir(spool, m.entity) / file_name(m, "end");
  write_atomically(path, out);
  return path;
}

void use_max_depth(simdjson::ondemand::parser& parser) {
  // Allocation failure leaves the default depth: the parser allocates again when it first runs.
  auto ignored = parser.allocate(64 * 1024, kMaxDepth);
  (void)ignored;
}

fs::path write_received(const fs::path& spool, const Meta& meta, std::string_view body) {
  fs::path path =
      incoming_dir(spool, meta.entity) / file_name(meta, fmt::format("p{:06}_received", meta.page));
  write_atomically(path, body);
  return path;
}

fs::path write_run_summary(const fs::path& spool, const Meta& meta) {
  Meta m = meta;
  m.kind = Kind::run_summary;
  const RunSummary& r = m.summary;
  std::string statuses;
  for (const auto& [code, n] : r.statuses)
    statuses += fmt::format("{}{}:{}", statuses.empty() ? "" : ",", json_quote(code), n);
  std::string out = envelope_head(m);
  out += fmt::format(
      ",\"summary\":{{\"status\":{},\"started_at\":{},\"completed_at\":{},\"records\":{},"
      "\"pages\":{},\"requests\":{},\"failed_requests\":{},\"retries\":{},"
      "\"throttled_seconds\":{:.3f},\"statuses\":{{{}}},\"error\":{},\"host\":{},\"pid\":{}}}}}\n",
      json_quote(r.status), json_quote(format_rfc3339(r.started_at)),
      r.completed_at ? json_quote(format_rfc3339(*r.completed_at)) : "null", r.records, r.pages,
      r.requests, r.failed_requests, r.retries, r.throttled_seconds, statuses, json_quote(r.error),
      json_quote(r.host), r.pid);
  fs::path path = incoming_dir(spool, m.entity) / file_name(m, "sum");
  write_atomically(path, out);
  return path;
}

std::vector<fs::path> pending(const fs::path& spool, std::string_view entity) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(incoming_dir(spool, entity), ec)) {
    auto name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;  // temporaries of a writer in progress
    if (!e.is_regular_file(ec)) continue;
    out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

fs::path move_to(const fs::path& file, const fs::path& dir) {
  fs::create_directories(dir);
  fs::path target = dir / file.filename();
  fs::rename(file, target);
  return target;
}

std::size_t prune_archive(const fs::path& spool, std::string_view entity,
                          std::chrono::milliseconds max_age, SysTime now) {
  if (max_age.count() <= 0) return 0;
  std::string cutoff = format_rfc3339(now - max_age).substr(0, 10);
  std::size_t removed = 0;
  std::error_code ec;
  // Day folders are named YYYY-MM-DD, so the string order is the time order.
  for (const auto& day : fs::directory_iterator(spool / "archive" / std::string(entity), ec)) {
    if (!day.is_directory(ec) || day.path().filename().string() >= cutoff) continue;
    removed += static_cast<std::size_t>(fs::remove_all(day.path(), ec));
  }
  return removed;
}

std::optional<double> free_fraction(const fs::path& spool) {
  struct statvfs st {};
  if (::statvfs(spool.c_str(), &st) != 0 || st.f_blocks == 0) return std::nullopt;
  return static_cast<double>(st.f_bavail) / static_cast<double>(st.f_blocks);
}

std::size_t prune_archive_for_space(const fs::path& spool, double min_free,
                                    const std::function<std::optional<double>()>& free_now) {
  auto low = [&] {
    auto f = free_now();
    return f && *f < min_free;
  };
  if (!low()) return 0;
  // Every day folder of every entity, oldest first (YYYY-MM-DD sorts as time does).
  std::vector<std::pair<std::string, fs::path>> days;
  std::error_code ec;
  for (const auto& entity : fs::directory_iterator(spool / "archive", ec)) {
    if (!entity.is_directory(ec)) continue;
    std::error_code ec2;
    for (const auto& day : fs::directory_iterator(entity.path(), ec2))
      if (day.is_directory(ec2)) days.emplace_back(day.path().filename().string(), day.path());
  }
  std::sort(days.begin(), days.end());
  std::size_t removed = 0;
  for (const auto& [name, path] : days) {
    if (!low()) break;
    std::size_t files = 0;
    for (const auto& f : fs::recursive_directory_iterator(path, ec))
      if (f.is_regular_file(ec)) ++files;
    if (fs::remove_all(path, ec) != static_cast<std::uintmax_t>(-1) && !ec) removed += files;
  }
  return removed;
}

std::vector<std::string> split_path(std::string_view dotted) {
  std::vector<std::string> parts;
  while (true) {
    auto dot = dotted.find('.');
    parts.emplace_back(dotted.substr(0, dot));
    if (dot == std::string_view::npos) break;
    dotted = dotted.substr(dot + 1);
  }
  return parts;
}

PageReader::PageReader(simdjson::ondemand::parser& parser, std::string bytes)
    : original_(std::move(bytes)), minified_(original_.size()), parser_(&parser) {
  if (auto e =
          simdjson::minify(original_.data(), original_.size(), minified_.data(), minified_size_))
    fail("not JSON", e);
  read_meta();
}

void PageReader::fail(std::string_view what, simdjson::error_code e) {
  if (e == simdjson::SUCCESS) throw FormatError(std::string(what));
  // On-Demand reports where it stumbled, not why; a full parse (only on this rare path)
  // tells "this is not JSON at all" apart from "JSON, but not a spool document".
  simdjson::dom::parser full;
  auto ignored = full.allocate(original_.size(), kMaxDepth);
  (void)ignored;
  if (auto err = full.parse(original_).error())
    throw FormatError(fmt::format("not JSON: {}", simdjson::error_message(err)));
  throw FormatError(fmt::format("{}: {}", what, simdjson::error_message(e)));
}

void PageReader::rewind() {
  meta_ = Meta{};
  read_meta();
}

void PageReader::read_summary(simdjson::ondemand::value& value) {
  using namespace simdjson;
  RunSummary& r = meta_.summary;
  ondemand::object obj;
  if (auto e = value.get_object().get(obj)) fail("field 'summary' must be an object", e);
  bool have_status = false, have_started = false;
  for (auto field : obj) {
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) fail("not JSON", e);
    ondemand::value v;
    if (auto e = field.value().get(v)) fail("not JSON", e);
    auto text = [&]() {
      std::string_view s;
      if (auto e = v.get_string().get(s))
        fail(fmt::format("summary field '{}' must be a string", key), e);
      return std::string(s);
    };
    auto time = [&]() {
      std::string t = text();
      auto parsed = parse_rfc3339(t);
      if (!parsed) fail(fmt::format("summary field '{}': '{}' is not an RFC 3339 time", key, t));
      return *parsed;
    };
    auto num = [&](std::int64_t& into) {
      if (auto e = v.get_int64().get(into))
        fail(fmt::format("summary field '{}' must be an integer", key), e);
    };
    if (key == "status") {
      r.status = text();
      if (r.status != "running" && r.status != "success" && r.status != "failed")
        fail(fmt::format("summary status '{}' is not running, success or failed", r.status));
      have_status = true;
    } else if (key == "started_at") {
      r.started_at = time();
      have_started = true;
    } else if (key == "completed_at") {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) fail("not JSON", e);
      if (!is_null) r.completed_at = time();
    } else if (key == "records") {
      num(r.records);
    } else if (key == "pages") {
      num(r.pages);
    } else if (key == "requests") {
      num(r.requests);
    } else if (key == "failed_requests") {
      num(r.failed_requests);
    } else if (key == "retries") {
      num(r.retries);
    } else if (key == "pid") {
      num(r.pid);
    } else if (key == "throttled_seconds") {
      if (auto e = v.get_double().get(r.throttled_seconds))
        fail("summary field 'throttled_seconds' must be a number", e);
    } else if (key == "error") {
      r.error = text();
    } else if (key == "host") {
      r.host = text();
    } else if (key == "statuses") {
      ondemand::object codes;
      if (auto e = v.get_object().get(codes)) fail("summary field 'statuses' must be an object", e);
      for (auto code : codes) {
        std::string_view name;
        if (auto e = code.unescaped_key().get(name)) fail("not JSON", e);
        std::int64_t n = 0;
        if (auto e = code.value().get_int64().get(n)) fail("summary statuses must be integers", e);
        r.statuses[std::string(name)] = n;
      }
    }
  }
  if (!have_status) fail("not a spool document: the summary has no status");
  if (!have_started) fail("not a spool document: the summary has no started_at");
}

void PageReader::read_meta() {
  using namespace simdjson;
  padded_string_view view(minified_.data(), minified_size_, original_.size() + SIMDJSON_PADDING);
  if (auto e = parser_->iterate(view).get(doc_)) fail("not JSON", e);
  ondemand::object obj;
  if (auto e = doc_.get_object().get(obj)) fail("not a spool document (not a JSON object)", e);
  bool have_version = false, have_records = false, have_fetched = false, have_entity = false,
       have_summary = false;
  std::string kind = "page";
  for (auto field : obj) {
    std::string_view key;
    if (auto e = field.unescaped_key().get(key)) fail("not JSON", e);
    ondemand::value v;
    if (auto e = field.value().get(v)) fail("not JSON", e);
    auto str = [&](std::string& into) {
      std::string_view s;
      if (auto e = v.get_string().get(s)) fail(fmt::format("field '{}' must be a string", key), e);
      into = std::string(s);
    };
    auto num = [&](std::int64_t& into) {
      if (auto e = v.get_int64().get(into))
        fail(fmt::format("field '{}' must be an integer", key), e);
    };
    if (key == "ingestd_spool") {
      std::int64_t version = 0;
      num(version);
      if (version != kFormatVersion)
        fail(fmt::format("unsupported spool format version {}", version));
      have_version = true;
    } else if (key == "kind") {
      str(kind);
    } else if (key == "source") {
      str(meta_.source);
    } else if (key == "entity") {
      str(meta_.entity);
      have_entity = true;
    } else if (key == "run_id") {
      str(meta_.run_id);
    } else if (key == "mode") {
      str(meta_.mode);
    } else if (key == "page") {
      num(meta_.page);
    } else if (key == "pages") {
      num(meta_.pages);
    } else if (key == "fetched_at") {
      std::string t;
      str(t);
      auto parsed = parse_rfc3339(t);
      if (!parsed) fail(fmt::format("fetched_at '{}' is not an RFC 3339 time", t));
      meta_.fetched_at = *parsed;
      have_fetched = true;
    } else if (key == "api_version") {
      bool is_null = false;
      if (auto e = v.is_null().get(is_null)) fail("not JSON", e);
      if (!is_null) {
        std::string a;
        str(a);
        meta_.api_version = a;
      }
    } else if (key == "summary") {
      have_summary = true;
      read_summary(v);
    } else if (key == "records") {
      have_records = true;  // streamed by next(); a run_end gives the count here instead
      ondemand::json_type t;
      if (auto e = v.type().get(t)) fail("not JSON", e);
      if (t == ondemand::json_type::number) num(meta_.records);
    }
    // Unknown fields are tolerated: a newer fetcher may add metadata.
  }
  // Past the end, current_location() reports OUT_OF_BOUNDS; anything else is trailing content.
  if (doc_.current_location().error() != simdjson::OUT_OF_BOUNDS)
    fail("not JSON: trailing content after the document");
  if (!have_version) fail("not a spool document: no ingestd_spool version field");
  if (!have_entity) fail("not a spool document: no entity field");
  if (!have_fetched) fail("not a spool document: no fetched_at field");
  if (kind == "page") {
    meta_.kind = Kind::page;
    if (!have_records) fail("not a spool document: a page has no records array");
    doc_.rewind();
    if (auto e = doc_.find_field_unordered("records").get_array().get(records_))
      fail("not a spool document: records is not an array", e);
    if (auto e = records_.begin().get(it_)) fail("not JSON", e);
    if (auto e = records_.end().get(end_)) fail("not JSON", e);
  } else if (kind == "run_end") {
    meta_.kind = Kind::run_end;
  } else if (kind == "run_summary") {
    meta_.kind = Kind::run_summary;
    if (!have_summary) fail("not a spool document: a run_summary has no summary object");
  } else {
    fail(fmt::format("not a spool document: unknown kind '{}'", kind));
  }
}

namespace {
std::string_view type_name(simdjson::ondemand::json_type t) {
  using simdjson::ondemand::json_type;
  switch (t) {
    case json_type::array:
      return "an array";
    case json_type::object:
      return "an object";
    case json_type::number:
      return "a number";
    case json_type::string:
      return "a string";
    case json_type::boolean:
      return "a boolean";
    case json_type::null:
      return "null";
  }
  return "unknown";
}

bool is_integer_token(std::string_view t) {
  if (!t.empty() && t[0] == '-') t.remove_prefix(1);
  return !t.empty() && std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
}
}  // namespace

bool PageReader::next(Record& out, const std::vector<std::string>& id_path) {
  using namespace simdjson;
  if (meta_.kind != Kind::page || it_ == end_) return false;
  out.external_id.reset();
  out.invalid_reason.clear();
  ondemand::value v;
  if (auto e = (*it_).get(v)) fail("not JSON", e);
  ondemand::json_type t;
  if (auto e = v.type().get(t)) fail("not JSON", e);
  if (t == ondemand::json_type::object) {
    ondemand::object obj;
    if (auto e = v.get_object().get(obj)) fail("not JSON", e);
    std::string joined = fmt::format("{}", fmt::join(id_path, "."));
    ondemand::value cur;
    auto e = obj.find_field_unordered(id_path[0]).get(cur);
    for (std::size_t i = 1; !e && i < id_path.size(); ++i) {
      ondemand::object inner;
      e = cur.get_object().get(inner);
      if (!e) e = inner.find_field_unordered(id_path[i]).get(cur);
    }
    if (e == NO_SUCH_FIELD || e == INCORRECT_TYPE) {
      out.invalid_reason = fmt::format("missing id field '{}'", joined);
    } else if (e) {
      fail("not JSON", e);
    } else {
      // A bad id value (`"id": x`, a string with a bad escape) spoils this record only: the
      // document stays usable, so the record is flagged and the others are staged.
      ondemand::json_type idt;
      std::string_view s;
      simdjson::error_code e2 = cur.type().get(idt);
      if (!e2 && idt == ondemand::json_type::string) e2 = cur.get_string().get(s);
      if (e2 && !doc_.is_alive()) fail("not JSON", e2);
      if (e2) {
        out.invalid_reason =
            fmt::format("id field '{}' is not valid JSON: {}", joined, error_message(e2));
      } else if (idt == ondemand::json_type::string) {
        if (s.empty())
          out.invalid_reason = fmt::format("id field '{}' is an empty string", joined);
        else
          out.external_id = std::string(s);
      } else if (idt == ondemand::json_type::number && is_integer_token(cur.raw_json_token())) {
        out.external_id = std::string(cur.raw_json_token());
      } else {
        out.invalid_reason = fmt::format(
            "id field '{}' is {}, not a string or an integer", joined,
            idt == ondemand::json_type::number ? "a non-integer number" : type_name(idt));
      }
    }
    if (auto e2 = obj.reset().error()) fail("not JSON", e2);
    if (auto e2 = obj.raw_json().get(out.json)) fail("not JSON", e2);
  } else {
    out.invalid_reason = fmt::format("record is {}, not an object", type_name(t));
    if (t == ondemand::json_type::array) {
      ondemand::array arr;
      if (auto e = v.get_array().get(arr)) fail("not JSON", e);
      if (auto e = arr.raw_json().get(out.json)) fail("not JSON", e);
    } else {
      out.json = v.raw_json_token();
    }
  }
  ++it_;
  return true;
}

}  // namespace ingestd::spool
