#include "fetcher/checkpoint.hpp"

#include <simdjson.h>

#include <fmt/format.h>

#include "core/files.hpp"
#include "core/json_text.hpp"
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

std::filesystem::path file_for(const std::filesystem::path& dir, std::string_view entity) {
  return dir / fmt::format("{}.json", entity);
}

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

Checkpoint load_checkpoint(const std::filesystem::path& state_dir, std::string_view entity) {
  Checkpoint cp;
  auto path = file_for(state_dir, entity);
  auto text = read_file(path);
  if (!text) return cp;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto e = parser.parse(*text).get(doc))
    throw std::runtime_error(fmt::format("checkpoint {} is not valid JSON ({}); fix or remove it",
                                         path.string(), simdjson::error_message(e)));
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

void save_checkpoint(const std::filesystem::path& state_dir, std::string_view entity,
                     const Checkpoint& cp) {
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
  std::string text = fmt::format(
      "{{\"version\":1,\"entity\":{},\"current\":{},\"last_run_id\":{},\"watermark\":{},"
      "\"last_completed\":{},\"last_full\":{}}}\n",
      json_quote(entity), current,
      cp.last_run_id ? json_quote(*cp.last_run_id) : std::string("null"),
      time_or_null(cp.watermark), time_or_null(cp.last_completed), time_or_null(cp.last_full));
  // No directory fsync: after a power loss the previous checkpoint may come back, and the run
  // then fetches its last page again (a duplicate, harmless). The page itself is durable
  // (spool::write_page syncs its directory) before this is written, so nothing is skipped.
  spool::write_atomically(file_for(state_dir, entity), text, /*sync_dir=*/false);
}

}  // namespace ingestd::fetcher
