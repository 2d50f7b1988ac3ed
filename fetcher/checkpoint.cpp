#include "fetcher/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <system_error>

#include <simdjson.h>

#include <fmt/format.h>

#include "core/files.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/spool.hpp"

namespace ingestd::fetcher {
namespace {

std::string time_or_null(const std::optional<SysTime>& t) {
  return t ? json_quote(format_rfc3339(*t)) : std::string("null");
}

std::optional<SysTime> time_field(simdjson::dom::element o, std::string_view key) {
  std::string_view s;
  if (o[key].get_string().get(s)) return std::nullopt;
  return parse_rfc3339(s);
}

// Two slots, written in turn: slot 0 is <entity>.json (the name of the single file of
// version 1, read as sequence 0), slot 1 is <entity>.json.1.
std::filesystem::path slot_path(const std::filesystem::path& dir, std::string_view entity,
                                std::uint64_t seq) {
  return dir / (seq % 2 == 0 ? fmt::format("{}.json", entity) : fmt::format("{}.json.1", entity));
}

// FNV-1a, 64 bits: detects a torn write, not an adversary.
std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

constexpr std::string_view kCheck = ",\"check\":\"";

// One slot's checkpoint, or nullopt when the slot is missing or torn. A version-2 text ends
// with ,"check":"<fnv1a of everything before it, hex>"} and trailing blanks.
std::optional<std::pair<std::uint64_t, Checkpoint>> read_slot(const std::filesystem::path& path,
                                                              simdjson::dom::parser& parser,
                                                              std::string& error);

}  // namespace

std::string_view mode_name(Mode m) {
  switch (m) {
    case Mode::incremental:
      return "incremental";
    case Mode::full:
      return "full";
    case Mode::repair:
      return "repair";
  }
  return "incremental";
}

std::optional<Mode> parse_mode(std::string_view s) {
  if (s == "incremental") return Mode::incremental;
  if (s == "full") return Mode::full;
  if (s == "repair") return Mode::repair;
  return std::nullopt;
}

namespace {

Checkpoint parse_checkpoint(simdjson::dom::element doc, const std::filesystem::path& path) {
  Checkpoint cp;
  std::string_view s;
  if (!doc["last_run_id"].get_string().get(s)) cp.last_run_id = std::string(s);
  cp.watermark = time_field(doc, "watermark");
  cp.last_completed = time_field(doc, "last_completed");
  cp.last_full = time_field(doc, "last_full");
  simdjson::dom::element cur;
  if (!doc["current"].get(cur) && cur.is_object()) {
    RunState r;
    if (cur["run_id"].get_string().get(s))
      throw std::runtime_error(
          fmt::format("checkpoint {}: current run without run_id", path.string()));
    r.run_id = std::string(s);
    if (!cur["mode"].get_string().get(s)) r.mode = parse_mode(s).value_or(Mode::incremental);
    r.since = time_field(cur, "since");
    r.until = time_field(cur, "until");
    r.newest = time_field(cur, "newest");
    r.started_at = time_field(cur, "started_at").value_or(SysTime{});
    if (cur["page"].get_int64().get(r.page) || cur["records"].get_int64().get(r.records))
      throw std::runtime_error(
          fmt::format("checkpoint {}: current run without page or records", path.string()));
    if (!cur["cursor"].get_string().get(s)) r.cursor = std::string(s);
    bool exhausted = false;
    if (!cur["exhausted"].get_bool().get(exhausted)) r.exhausted = exhausted;
    cp.current = r;
  }
  return cp;
}

std::optional<std::pair<std::uint64_t, Checkpoint>> read_slot(const std::filesystem::path& path,
                                                              simdjson::dom::parser& parser,
                                                              std::string& error) {
  auto text = read_file(path);
  if (!text) return std::nullopt;
  simdjson::dom::element doc;
  if (auto e = parser.parse(*text).get(doc)) {
    error = fmt::format("{} is not valid JSON ({})", path.string(), simdjson::error_message(e));
    return std::nullopt;
  }
  std::int64_t version = 1;
  if (doc["version"].get_int64().get(version)) version = 1;
  std::uint64_t seq = 0;
  if (version >= 2) {
    auto at = text->rfind(kCheck);
    std::uint64_t want = 0;
    if (at == std::string::npos || doc["seq"].get_uint64().get(seq) ||
        std::sscanf(text->c_str() + at + kCheck.size(), "%16" SCNx64, &want) != 1 ||
        fnv1a(std::string_view(*text).substr(0, at)) != want) {
      error = fmt::format("{} fails its check (a write cut short?)", path.string());
      return std::nullopt;
    }
  }
  return std::pair{seq, parse_checkpoint(doc, path)};
}

}  // namespace

// The newer of the two slots that is whole. One torn slot is a write cut short by a crash:
// the other one, a page older, is used (that page is fetched again).
Checkpoint load_checkpoint(const std::filesystem::path& state_dir, std::string_view entity) {
  simdjson::dom::parser parser;
  std::string error0, error1;
  auto a = read_slot(slot_path(state_dir, entity, 0), parser, error0);
  auto b = read_slot(slot_path(state_dir, entity, 1), parser, error1);
  if (!a && !b) {
    if (error0.empty() && error1.empty()) return {};  // no checkpoint yet
    throw std::runtime_error(fmt::format("checkpoint of {}: {}; fix or remove it", entity,
                                         error0.empty() ? error1 : error0));
  }
  if (!a && !error0.empty())
    log::warn("fetcher.checkpoint_slot_torn", "entity={} error={} action=other_slot", entity,
              log::q(error0));
  if (!b && !error1.empty())
    log::warn("fetcher.checkpoint_slot_torn", "entity={} error={} action=other_slot", entity,
              log::q(error1));
  bool a_newer = a && (!b || a->first > b->first);
  if (a && b && a->first == 0) {
    // Slot 0 in the one-file format (sequence 0) beside a slot 1 of this format: either the
    // first save after an upgrade (slot 1 is newer) or a downgrade that went on writing only
    // <entity>.json (slot 0 is newer). The file times tell which.
    std::error_code ec0, ec1;
    auto t0 = std::filesystem::last_write_time(slot_path(state_dir, entity, 0), ec0);
    auto t1 = std::filesystem::last_write_time(slot_path(state_dir, entity, 1), ec1);
    a_newer = !ec0 && !ec1 && t0 > t1;
  }
  auto& newest = a_newer ? *a : *b;
  newest.second.seq = newest.first;
  return std::move(newest.second);
}

void save_checkpoint(const std::filesystem::path& state_dir, std::string_view entity,
                     Checkpoint& cp) {
  std::string current = "null";
  if (cp.current) {
    const auto& r = *cp.current;
    current = fmt::format(
        "{{\"run_id\":{},\"mode\":{},\"since\":{},\"until\":{},\"page\":{},\"records\":{},"
        "\"cursor\":{},\"newest\":{},\"started_at\":{},\"exhausted\":{}}}",
        json_quote(r.run_id), json_quote(mode_name(r.mode)), time_or_null(r.since),
        time_or_null(r.until), r.page, r.records, json_quote(r.cursor), time_or_null(r.newest),
        json_quote(format_rfc3339(r.started_at)), r.exhausted ? "true" : "false");
  }
  std::uint64_t seq = cp.seq + 1;
  std::string text = fmt::format(
      "{{\"version\":2,\"seq\":{},\"entity\":{},\"current\":{},\"last_run_id\":{},"
      "\"watermark\":{},\"last_completed\":{},\"last_full\":{}",
      seq, json_quote(entity), current,
      cp.last_run_id ? json_quote(*cp.last_run_id) : std::string("null"),
      time_or_null(cp.watermark), time_or_null(cp.last_completed), time_or_null(cp.last_full));
  text += fmt::format("{}{:016x}\"}}\n", kCheck, fnv1a(text));
  // Written in place over the older slot: no file created, renamed or deleted per page, and
  // the other slot stays whole if this write is cut short. Blanks pad the text to the slot's
  // size (JSON allows them), so the file keeps its size and the sync writes the data alone.
  // A slot that does not exist yet, or still holds the one-file format (no checksum to
  // expose a torn write), is replaced whole instead: temporary file, rename, directory fsync.
  auto path = slot_path(state_dir, entity, seq);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  char head[13] = {};
  struct stat st {};
  if (fd >= 0 && (::fstat(fd, &st) != 0 || ::pread(fd, head, sizeof head, 0) != sizeof head ||
                  std::string_view(head, sizeof head) != R"({"version":2,)")) {
    ::close(fd);
    fd = -1;
  }
  if (fd < 0) {
    spool::write_atomically(path, text, /*sync_dir=*/true);
    cp.seq = seq;
    return;
  }
  if (static_cast<std::size_t>(st.st_size) > text.size())
    text.append(static_cast<std::size_t>(st.st_size) - text.size(), ' ');
  std::size_t done = 0;
  int err = 0;
  while (done < text.size() && err == 0) {
    ssize_t n = ::pwrite(fd, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno != EINTR) err = errno;
    if (n == 0) err = EIO;  // no progress: never spin
    if (n > 0) done += static_cast<std::size_t>(n);
  }
  if (err == 0 && ::fdatasync(fd) != 0) err = errno;
  ::close(fd);
  if (err != 0)
    throw std::system_error(err, std::generic_category(), "cannot write " + path.string());
  cp.seq = seq;
}

}  // namespace ingestd::fetcher
