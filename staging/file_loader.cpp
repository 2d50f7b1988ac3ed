#include "staging/file_loader.hpp"

#include <chrono>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/failpoint.hpp"
#include "core/log.hpp"
#include "core/stop.hpp"

namespace ingestd::staging {
namespace fs = std::filesystem;

namespace {

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::string bytes;
  in.seekg(0, std::ios::end);
  bytes.resize(static_cast<std::size_t>(in.tellg()));
  in.seekg(0);
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return bytes;
}

std::string hex_bytea(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out = "\\x";
  out.reserve(2 + bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Postgres text parameters end at a NUL byte; a record that still carries one after JSON
// validation is kept with U+FFFD in its place (and flagged), never truncated.
std::string without_nul(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\0')
      out += "\xEF\xBF\xBD";
    else
      out += c;
  }
  return out;
}

constexpr std::size_t kCopyFlushBytes = 1 << 20;

}  // namespace

FileLoader::FileLoader(pg::Connection& conn, const config::Config& config,
                       const config::Entity& entity, const StopToken& stop)
    : conn_(conn),
      config_(config),
      entity_(entity),
      stop_(stop),
      table_(pg::Identifier("stg_" + entity.name).quoted()),
      id_path_(spool::split_path(entity.id_path)) {}

void FileLoader::rollback() noexcept {
  try {
    if (conn_.healthy()) conn_.exec_script("ROLLBACK");
  } catch (const std::exception&) {
    // The connection is being dropped by the caller anyway.
  }
}

std::optional<std::int64_t> FileLoader::claim_ledger(const fs::path& file, const spool::Meta& meta,
                                                     std::string_view outcome, std::size_t bytes) {
  // The primary key (entity, file_name) makes this the exactly-once gate: a second stager
  // on the same file blocks here until the first commits, then finds the row and backs off.
  auto r = conn_.query(
      "INSERT INTO ingestd_spool_ledger (entity, file_name, outcome, source, run_id, mode, "
      "page, bytes, fetched_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
      "ON CONFLICT (entity, file_name) DO NOTHING RETURNING id",
      entity_.name, file.filename().string(), outcome, meta.source, meta.run_id,
      meta.mode.empty() ? pg::Param{} : pg::param(meta.mode), meta.page,
      static_cast<std::int64_t>(bytes),
      meta.fetched_at == SysTime{} ? pg::Param{} : pg::param(format_rfc3339(meta.fetched_at)));
  if (r.rows() == 0) return std::nullopt;
  return r.get_int(0, 0);
}

Outcome FileLoader::load(const fs::path& file, Totals& totals) {
  auto started = std::chrono::steady_clock::now();
  auto bytes = read_file(file);
  if (!bytes) return Outcome::vanished;  // another stager archived it meanwhile
  std::size_t size = bytes->size();

  std::optional<spool::PageReader> reader;
  try {
    reader.emplace(parser_, std::move(*bytes));
  } catch (const spool::FormatError& e) {
    ++totals.files_quarantined;
    return quarantine(file, reader ? reader->original() : std::string_view{}, e.what());
  }
  const auto& meta = reader->meta();
  if (meta.entity != entity_.name) {
    ++totals.files_quarantined;
    return quarantine(file, reader->original(),
                      fmt::format("the file says entity '{}' but lies in incoming/{}", meta.entity,
                                  entity_.name));
  }

  Counts counts;
  bool row_by_row = false;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) reader->rewind();
    conn_.exec_script("BEGIN");
    try {
      auto ledger_id =
          claim_ledger(file, meta, meta.kind == spool::Kind::page ? "loaded" : "run_end", size);
      if (!ledger_id) {
        rollback();
        spool::move_to(file, spool::archive_dir(config_.spool_dir, entity_.name,
                                                std::chrono::system_clock::now()));
        ++totals.files_replayed;
        log::info("stager.file_replayed", "entity={} file={} reason={}", entity_.name,
                  file.filename().string(), log::q("already in the ledger"));
        return Outcome::replayed;
      }
      failpoint("stager.after_ledger");
      Outcome outcome = Outcome::run_end;
      if (meta.kind == spool::Kind::run_end) {
        conn_.query(
            "INSERT INTO ingestd_fetch_runs (entity, run_id, source, mode, pages, records, "
            "completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            entity_.name, meta.run_id, meta.source, meta.mode, meta.pages, meta.records,
            format_rfc3339(meta.fetched_at));
      } else {
        counts = {};
        outcome = load_page(*reader, *ledger_id, row_by_row, counts);
        conn_.query(
            "UPDATE ingestd_spool_ledger SET records = $1, staged = $2, duplicates = $3, "
            "flagged = $4 WHERE id = $5",
            counts.records, counts.staged, counts.duplicates, counts.flagged, *ledger_id);
      }
      failpoint("stager.before_commit");
      conn_.exec_script("COMMIT");
      failpoint("stager.after_commit");
      spool::move_to(file, spool::archive_dir(config_.spool_dir, entity_.name,
                                              std::chrono::system_clock::now()));
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - started)
                    .count();
      if (outcome == Outcome::run_end) {
        ++totals.run_ends;
        log::info("stager.run_end", "entity={} run_id={} mode={} pages={} records={}", entity_.name,
                  meta.run_id, meta.mode, meta.pages, meta.records);
      } else {
        ++totals.files_loaded;
        totals.records += counts.records;
        totals.staged += counts.staged;
        totals.duplicates += counts.duplicates;
        totals.flagged += counts.flagged;
        log::info("stager.file_loaded",
                  "entity={} file={} records={} staged={} duplicates={} flagged={} ms={}",
                  entity_.name, file.filename().string(), counts.records, counts.staged,
                  counts.duplicates, counts.flagged, ms);
      }
      return outcome;
    } catch (const pg::Error& e) {
      rollback();
      if (e.data_error() && !row_by_row) {
        // A record Postgres will not take as jsonb (e.g. a number beyond numeric's range)
        // failed the whole COPY. Load the file again row by row: that row is kept as text
        // and flagged, the others are staged normally.
        log::warn("stager.row_by_row", "entity={} file={} error={}", entity_.name,
                  file.filename().string(), log::q(e.what()));
        row_by_row = true;
        continue;
      }
      if (e.unique_violation()) {
        // Another stager staged the same content between our check and our COPY; the next
        // attempt sees it as a duplicate.
        log::warn("stager.concurrent_duplicate", "entity={} file={}", entity_.name,
                  file.filename().string());
        continue;
      }
      throw;
    } catch (...) {
      rollback();
      throw;
    }
  }
}

Outcome FileLoader::load_page(spool::PageReader& reader, std::int64_t ledger_id, bool row_by_row,
                              Counts& counts) {
  seen_.clear();
  std::vector<Row> chunk;
  chunk.reserve(
      static_cast<std::size_t>(std::min<std::int64_t>(config_.staging_batch_records, 8192)));
  spool::Record rec;
  while (reader.next(rec, id_path_)) {
    ++counts.records;
    chunk.push_back(
        {rec.json, std::move(rec.external_id), std::move(rec.invalid_reason), md5(rec.json)});
    if (static_cast<std::int64_t>(chunk.size()) >= config_.staging_batch_records) {
      stage_chunk(chunk, reader.meta(), ledger_id, row_by_row, counts);
      if (stop_.stop_requested()) throw Interrupted();
    }
  }
  stage_chunk(chunk, reader.meta(), ledger_id, row_by_row, counts);
  return Outcome::loaded;
}

void FileLoader::stage_chunk(std::vector<Row>& chunk, const spool::Meta& meta,
                             std::int64_t ledger_id, bool row_by_row, Counts& counts) {
  if (chunk.empty()) return;
  // Same content twice in one page: keep the first.
  std::vector<const Row*> fresh;
  fresh.reserve(chunk.size());
  for (const auto& r : chunk) {
    if (seen_.insert(r.digest).second)
      fresh.push_back(&r);
    else
      ++counts.duplicates;
  }
  // Same content staged by an earlier file: ask the unique index in one round trip.
  std::string array = "{";
  for (const Row* r : fresh) {
    if (array.size() > 1) array += ',';
    array += r->digest.hex();
  }
  array += '}';
  auto existing = conn_.query(
      fmt::format("SELECT content_hash FROM {} WHERE content_hash = ANY($1::uuid[])", table_),
      array);
  if (existing.rows() > 0) {
    std::unordered_set<std::string> known;
    for (int i = 0; i < existing.rows(); ++i) {
      std::string h(existing.get(i, 0));
      h.erase(std::remove(h.begin(), h.end(), '-'), h.end());
      known.insert(std::move(h));
    }
    std::erase_if(fresh, [&](const Row* r) { return known.count(r->digest.hex()) > 0; });
    counts.duplicates += existing.rows();
  }
  insert_rows(fresh, meta, ledger_id, row_by_row);
  counts.staged += static_cast<int>(fresh.size());
  for (const Row* r : fresh)
    if (!r->invalid_reason.empty()) ++counts.flagged;
  chunk.clear();
}

void FileLoader::insert_rows(const std::vector<const Row*>& rows, const spool::Meta& meta,
                             std::int64_t ledger_id, bool row_by_row) {
  if (rows.empty()) return;
  if (row_by_row) {
    std::string insert = fmt::format(
        "INSERT INTO {} (raw_data, external_id, content_hash, fetched_at, run_id, ledger_id, "
        "invalid_reason) VALUES ({}, $2, $3::uuid, $4, $5, $6, $7)",
        table_, "$1::jsonb");
    std::string fallback = fmt::format(
        "INSERT INTO {} (raw_data, external_id, content_hash, fetched_at, run_id, ledger_id, "
        "invalid_reason) VALUES (to_jsonb($1::text), $2, $3::uuid, $4, $5, $6, $7)",
        table_);
    std::string fetched = format_rfc3339(meta.fetched_at);
    for (const Row* r : rows) {
      conn_.exec_script("SAVEPOINT record");
      auto reason = r->invalid_reason.empty() ? pg::Param{} : pg::param(r->invalid_reason);
      try {
        conn_.query(insert, without_nul(r->json), r->external_id, r->digest.hex(), fetched,
                    meta.run_id, ledger_id, reason);
        conn_.exec_script("RELEASE SAVEPOINT record");
      } catch (const pg::Error& e) {
        if (!e.data_error()) throw;
        conn_.exec_script("ROLLBACK TO SAVEPOINT record");
        std::string why =
            fmt::format("postgres rejected the record as JSON ({}); kept as text", e.what());
        conn_.query(fallback, without_nul(r->json), r->external_id, r->digest.hex(), fetched,
                    meta.run_id, ledger_id, why);
        log::warn("stager.record_kept_as_text", "entity={} reason={}", entity_.name,
                  log::q(e.what()));
      }
    }
    return;
  }
  conn_.copy_begin(
      fmt::format("COPY {} (raw_data, external_id, content_hash, fetched_at, run_id, ledger_id, "
                  "invalid_reason) FROM STDIN (FORMAT binary)",
                  table_));
  try {
    std::int64_t fetched = pg::pg_epoch_micros(meta.fetched_at);
    copy_ = pg::BinaryCopyWriter();  // each COPY stream starts with the PGCOPY header
    bool halfway_failpoint = rows.size() > 1;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row* r = rows[i];
      copy_.begin_row(7);
      copy_.add_jsonb(r->json);
      if (r->external_id)
        copy_.add_text(*r->external_id);
      else
        copy_.add_null();
      copy_.add_uuid(r->digest.bytes);
      copy_.add_int64(fetched);
      copy_.add_text(meta.run_id);
      copy_.add_int64(ledger_id);
      if (r->invalid_reason.empty())
        copy_.add_null();
      else
        copy_.add_text(r->invalid_reason);
      if (copy_.size() >= kCopyFlushBytes) {
        conn_.copy_put(copy_.data());
        copy_.clear();
      }
      if (halfway_failpoint && i == rows.size() / 2) failpoint("stager.mid_copy");
    }
    copy_.finish();
    conn_.copy_put(copy_.data());
    copy_.clear();
    conn_.copy_end();
  } catch (const pg::Error&) {
    conn_.copy_abort("stager error");
    throw;
  }
}

Outcome FileLoader::quarantine(const fs::path& file, std::string_view bytes,
                               const std::string& reason) {
  std::string original(bytes);
  if (original.empty()) {
    // The reader never took the bytes (it failed in its constructor): read them again.
    std::ifstream in(file, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    original = ss.str();
  }
  conn_.exec_script("BEGIN");
  try {
    spool::Meta meta;
    auto ledger_id = claim_ledger(file, meta, "quarantined", original.size());
    if (ledger_id) {
      conn_.query(
          "INSERT INTO ingestd_quarantine (entity, file_name, error, raw_bytes, bytes) "
          "VALUES ($1, $2, $3, $4::bytea, $5)",
          entity_.name, file.filename().string(), reason, hex_bytea(original),
          static_cast<std::int64_t>(original.size()));
    }
    conn_.exec_script("COMMIT");
  } catch (...) {
    rollback();
    throw;
  }
  spool::move_to(file, spool::quarantine_dir(config_.spool_dir, entity_.name));
  log::warn("stager.file_quarantined", "entity={} file={} bytes={} reason={}", entity_.name,
            file.filename().string(), original.size(), log::q(reason));
  return Outcome::quarantined;
}

}  // namespace ingestd::staging
