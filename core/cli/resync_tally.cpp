#include "core/cli/resync_tally.hpp"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <span>

#include <fmt/format.h>

#include "core/files.hpp"
#include "core/hash.hpp"
#include "core/pg.hpp"
#include "core/spool.hpp"

namespace ingestd::cli::repair {
namespace {

// Hashes per query: one round trip each, a parameter of ~200 kB.
constexpr std::size_t kChunk = 5000;

std::string staging_table(const std::string& entity) {
  return pg::Identifier("stg_" + entity).quoted();
}

// A staged file is in incoming/ until the stager that committed it moves it (a crash in
// between leaves it there for a replay), then in archive/<entity>/<UTC day of the move>/:
// the day of loaded_at, or the next one when the move crossed midnight.
std::optional<std::string> read_page(const config::Config& cfg, const std::string& entity,
                                     const std::string& name, SysTime loaded_at) {
  using std::chrono::hours;
  std::vector<std::filesystem::path> candidates = {spool::incoming_dir(cfg.spool_dir, entity)};
  for (auto day : {loaded_at, loaded_at + hours(24), loaded_at - hours(24)})
    candidates.push_back(spool::archive_dir(cfg.spool_dir, entity, day));
  for (const auto& dir : candidates)
    if (auto bytes = read_file(dir / name)) return bytes;
  return std::nullopt;
}

template <class F>
void in_chunks(const Contents& c, F&& body) {
  std::span<const std::pair<std::string, std::int64_t>> all(c.hashes);
  for (std::size_t at = 0; at < all.size(); at += kChunk) {
    auto part = all.subspan(at, std::min(kChunk, all.size() - at));
    std::vector<pg::Param> hashes, counts;
    for (const auto& [hash, n] : part) {
      hashes.emplace_back(hash);
      counts.emplace_back(std::to_string(n));
    }
    body(pg::array_literal(hashes), pg::array_literal(counts));
  }
}

}  // namespace

std::int64_t written_pages(const config::Config& cfg, const std::string& entity,
                           const std::string& run_id) {
  // incoming/ first: a file moves only from there to archive/, so none is missed.
  std::vector<std::filesystem::path> dirs = {spool::incoming_dir(cfg.spool_dir, entity)};
  auto now = std::chrono::system_clock::now();
  auto yesterday = spool::archive_dir(cfg.spool_dir, entity, now - std::chrono::hours(24));
  std::error_code ec;
  for (const auto& day : std::filesystem::directory_iterator(yesterday.parent_path(), ec))
    if (day.path().filename() >= yesterday.filename()) dirs.push_back(day.path());
  std::set<std::string> names;
  const std::string mark = "_" + run_id + "_p";
  for (const auto& dir : dirs)
    for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
      auto name = f.path().filename().string();
      if (name[0] != '.' && name.find(mark) != std::string::npos) names.insert(name);
    }
  return static_cast<std::int64_t>(names.size());
}

Staged staged(pg::Connection& conn, const std::string& entity, const std::string& run_id) {
  auto r = conn.query(
      "SELECT count(*), coalesce(sum(records), 0), coalesce(sum(staged), 0), "
      "coalesce(sum(duplicates), 0), coalesce(sum(flagged), 0) FROM ingestd_spool_ledger "
      "WHERE entity = $1 AND run_id = $2 AND outcome = 'loaded'",
      entity, run_id);
  return {r.get_int(0, 0), r.get_int(0, 1), r.get_int(0, 2), r.get_int(0, 3), r.get_int(0, 4)};
}

Contents read_run(pg::Connection& conn, const config::Config& cfg, const config::Entity& entity,
                  const std::string& run_id) {
  auto files = conn.query(
      "SELECT file_name, extract(epoch FROM loaded_at)::bigint FROM ingestd_spool_ledger "
      "WHERE entity = $1 AND run_id = $2 AND outcome = 'loaded' ORDER BY page, file_name",
      entity.name, run_id);
  Contents out;
  std::vector<Digest> all;
  simdjson::ondemand::parser parser;
  auto id_path = spool::split_path(entity.id_path);
  for (int i = 0; i < files.rows(); ++i) {
    std::string name(files.get(i, 0));
    SysTime loaded{std::chrono::seconds(files.get_int(i, 1))};
    auto bytes = read_page(cfg, entity.name, name, loaded);
    if (!bytes) {
      out.unreadable.push_back(name);
      continue;
    }
    // The stager read this very file, so it parses; the hash is the stager's (md5 of the
    // minified record text), so it names the record's staging row.
    spool::PageReader reader(parser, std::move(*bytes));
    spool::Record rec;
    while (reader.next(rec, id_path)) all.push_back(md5(rec.json));
  }
  out.records = static_cast<std::int64_t>(all.size());
  std::sort(all.begin(), all.end(), [](const Digest& a, const Digest& b) {
    return std::memcmp(a.bytes, b.bytes, sizeof a.bytes) < 0;
  });
  for (std::size_t i = 0; i < all.size();) {
    std::size_t j = i;
    while (j < all.size() && all[j] == all[i]) ++j;
    out.hashes.emplace_back(all[i].hex(), static_cast<std::int64_t>(j - i));
    i = j;
  }
  return out;
}

Tally tally(pg::Connection& conn, const config::Entity& entity, const Contents& contents,
            const std::string& since) {
  // One row per (category, reason): the reason only for rows that did not reach production.
  const std::string sql = fmt::format(
      "SELECT CASE WHEN s.content_hash IS NULL THEN 'missing'\n"
      "  WHEN s.outcome = 'applied' AND s.processed_at >= $3::timestamptz THEN "
      "coalesce(s.applied_as, 'changed')\n"
      "  WHEN s.outcome = 'applied' THEN 'unchanged'\n"
      "  WHEN s.outcome IS NOT NULL THEN s.outcome\n"
      "  WHEN s.next_attempt_at > now() THEN 'retrying' ELSE 'waiting' END,\n"
      "  CASE WHEN s.outcome IS NULL OR s.outcome IN ('skipped', 'dead') THEN s.last_error END,\n"
      "  count(*), sum(h.n - 1), min(s.external_id)\n"
      "FROM unnest($1::uuid[], $2::bigint[]) AS h(hash, n) LEFT JOIN {} s ON s.content_hash = "
      "h.hash\nGROUP BY 1, 2",
      staging_table(entity.name));
  Tally t;
  std::map<std::pair<std::string, std::string>, Problem> problems;
  in_chunks(contents, [&](const std::string& hashes, const std::string& counts) {
    auto r = conn.query(sql, hashes, counts, since);
    for (int i = 0; i < r.rows(); ++i) {
      std::string kind(r.get(i, 0));
      auto rows = r.get_int(i, 2);
      t.unchanged += r.get_int(i, 3);  // repeats within the run
      if (kind == "new" || kind == "filled") t.new_rows += rows;
      if (kind == "filled") t.filled += rows;
      if (kind == "changed") t.changed += rows;
      if (kind == "unchanged") t.unchanged += rows;
      if (kind == "superseded") t.superseded += rows;
      std::int64_t* failed = kind == "skipped"    ? &t.skipped
                             : kind == "dead"     ? &t.dead
                             : kind == "retrying" ? &t.retrying
                             : kind == "waiting"  ? &t.waiting
                             : kind == "missing"  ? &t.missing
                                                  : nullptr;
      if (!failed) continue;
      *failed += rows;
      std::string reason(r.get(i, 1));
      if (kind == "missing") reason = "no staging row has this content (purged meanwhile?)";
      auto& p = problems[{kind, reason}];
      p.kind = kind;
      p.reason = reason;
      p.rows += rows;
      if (p.example.empty()) p.example = std::string(r.get(i, 4));
    }
  });
  for (auto& [key, p] : problems) t.problems.push_back(std::move(p));
  std::stable_sort(t.problems.begin(), t.problems.end(), [](const Problem& a, const Problem& b) {
    return a.kind != b.kind ? a.kind < b.kind : a.rows > b.rows;
  });
  return t;
}

std::int64_t placeholders(pg::Connection& conn, const config::Config& cfg,
                          const config::Entity& entity, const Contents& contents,
                          const std::string& since) {
  std::map<std::string, std::set<std::string>> ids;  // referenced table -> placeholder ids
  for (const auto& c : entity.table.columns) {
    if (c.references.empty()) continue;
    const auto* target = cfg.find_entity(c.references);
    if (!target || target->table.name.empty()) continue;
    // The reference as production holds it now: the record's applied version.
    std::string sql = fmt::format(
        "SELECT DISTINCT p.id FROM {} s JOIN {} t ON t.id = s.external_id JOIN {} p ON p.id = "
        "t.{} WHERE s.content_hash = ANY($1::uuid[]) AND p.is_placeholder AND p.created_at >= "
        "$2::timestamptz",
        staging_table(entity.name), pg::Identifier(entity.table.name).quoted(),
        pg::Identifier(target->table.name).quoted(), pg::Identifier(c.name).quoted());
    auto& seen = ids[target->table.name];
    in_chunks(contents, [&](const std::string& hashes, const std::string&) {
      auto r = conn.query(sql, hashes, since);
      for (int i = 0; i < r.rows(); ++i) seen.emplace(r.get(i, 0));
    });
  }
  std::int64_t n = 0;
  for (const auto& [table, set] : ids) n += static_cast<std::int64_t>(set.size());
  return n;
}

FullRun full_run(pg::Connection& conn, const std::string& entity, const std::string& run_id) {
  auto r = conn.query(
      "SELECT r.reconciled_at IS NOT NULL OR r.deletion IS NOT NULL, coalesce(r.deleted, 0), "
      "coalesce(r.undeleted, 0), coalesce(r.deletion, ''), r.pages, (SELECT count(DISTINCT "
      "l.page) FROM ingestd_spool_ledger l WHERE l.entity = r.entity AND l.run_id = r.run_id "
      "AND l.outcome = 'loaded') FROM ingestd_fetch_runs r WHERE r.entity = $1 AND r.run_id = $2",
      entity, run_id);
  FullRun f;
  if (r.rows() == 0) return f;
  f.staged = true;
  f.settled = r.get(0, 0) == "t";
  f.deleted = r.get_int(0, 1);
  f.undeleted = r.get_int(0, 2);
  f.deletion = std::string(r.get(0, 3));
  f.pages = r.get_int(0, 4);
  f.pages_staged = r.get_int(0, 5);
  return f;
}

std::int64_t unprocessed(pg::Connection& conn, const std::string& entity,
                         const std::string& run_id) {
  return conn
      .query(fmt::format("SELECT count(*) FROM {} WHERE NOT processed AND run_id = $1",
                         staging_table(entity)),
             run_id)
      .get_int(0, 0);
}

}  // namespace ingestd::cli::repair
