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
constexpr int kMaxConflictRetries = 5;

}  // namespace

FileLoader::FileLoader(const config::Config& config, const config::Entity& entity,
                       const StopToken& stop, InFlight& in_flight)
    : config_(config),
      entity_(entity),
      stop_(stop),
      in_flight_(in_flight),
      table_(pg::Identifier("stg_" + entity.name).quoted()),
      id_path_(spool::split_path(entity.id_path)),
      check_sql_(
          fmt::format("SELECT replace(content_hash::text, '-', '') FROM {} WHERE content_hash = "
                      "ANY($1::uuid[])",
                      table_)),
      copy_sql_(fmt::format("COPY {} (raw_data, external_id, content_hash, fetched_at, run_id, "
                            "ledger_id, invalid_reason) FROM STDIN (FORMAT binary)",
                            table_)) {}

void FileLoader::rollback() noexcept {
  try {
    if (conn_->healthy()) conn_->exec_script("ROLLBACK");
  } catch (const std::exception&) {
    // The connection is being dropped by the caller anyway.
  }
}

std::optional<std::int64_t> FileLoader::claim_ledger(const fs::path& file, const spool::Meta& meta,
                                                     std::string_view outcome, std::size_t bytes) {
  // The primary key (entity, file_name) makes this the exactly-once gate: a second stager
  // on the same file blocks here until the first commits, then finds the row and backs off.
  auto r = conn_->query(
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

void FileLoader::archive(const fs::path& file) {
  spool::move_to(
      file, spool::archive_dir(config_.spool_dir, entity_.name, std::chrono::system_clock::now()));
}

Outcome FileLoader::load(pg::Connection& conn, const fs::path& file, Totals& totals) {
  conn_ = &conn;
  auto bytes = read_file(file);
  if (!bytes) return Outcome::vanished;  // another stager archived it meanwhile
  std::size_t size = bytes->size();
  std::optional<spool::PageReader> reader;
  try {
    reader.emplace(parser_, std::move(*bytes));
  } catch (const spool::FormatError& e) {
    ++totals.files_quarantined;
    return quarantine(file, {}, e.what());
  }
  if (reader->meta().entity != entity_.name) {
    ++totals.files_quarantined;
    return quarantine(file, reader->original(),
                      fmt::format("the file says entity '{}' but lies in incoming/{}",
                                  reader->meta().entity, entity_.name));
  }
  Path path = Path::copy;
  for (int attempt_no = 0;; ++attempt_no) {
    if (attempt_no > 0) reader->rewind();
    try {
      return attempt(file, *reader, path, size, totals);
    } catch (const pg::Error& e) {
      rollback();
      if (e.data_error() && path == Path::copy) {
        // A record Postgres will not take as jsonb (e.g. a number beyond numeric's range)
        // failed the whole COPY. Load the file again row by row: that row is kept as text
        // and flagged, the others are staged normally.
        log::warn("stager.row_by_row", "entity={} file={} error={}", entity_.name,
                  file.filename().string(), log::q(e.what()));
        path = Path::row_by_row;
        continue;
      }
      bool conflict = e.unique_violation() || e.sqlstate() == "40P01" || e.sqlstate() == "40001";
      if (conflict && attempt_no < kMaxConflictRetries) {
        // A stager in another process staged the same content meanwhile (or a deadlock with
        // it): the transaction was rolled back whole; the next attempt sees that content.
        log::warn("stager.conflict_retry", "entity={} file={} sqlstate={}", entity_.name,
                  file.filename().string(), e.sqlstate());
        continue;
      }
      throw;
    } catch (...) {
      rollback();
      throw;
    }
  }
}

// One transaction: the ledger row (the exactly-once gate), the records, the ledger counts.
Outcome FileLoader::attempt(const fs::path& file, spool::PageReader& reader, Path path,
                            std::size_t bytes, Totals& totals) {
  auto started = std::chrono::steady_clock::now();
  const auto& meta = reader.meta();
  std::optional<InFlight::Claim> claim;  // outlives COMMIT/ROLLBACK: declared first
  conn_->exec_script("BEGIN");
  auto ledger_id =
      claim_ledger(file, meta, meta.kind == spool::Kind::page ? "loaded" : "run_end", bytes);
  if (!ledger_id) {
    rollback();
    archive(file);
    ++totals.files_replayed;
    log::info("stager.file_replayed", "entity={} file={} reason={}", entity_.name,
              file.filename().string(), log::q("already in the ledger"));
    return Outcome::replayed;
  }
  failpoint("stager.after_ledger");
  Counts counts;
  if (meta.kind == spool::Kind::run_end) {
    conn_->query(
        "INSERT INTO ingestd_fetch_runs (entity, run_id, source, mode, pages, records, "
        "completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        entity_.name, meta.run_id, meta.source, meta.mode, meta.pages, meta.records,
        format_rfc3339(meta.fetched_at));
  } else {
    counts = stage_page(reader, *ledger_id, path, claim);
    conn_->query(
        "UPDATE ingestd_spool_ledger SET records = $1, staged = $2, duplicates = $3, "
        "flagged = $4 WHERE id = $5",
        counts.records, counts.staged, counts.duplicates, counts.flagged, *ledger_id);
  }
  failpoint("stager.before_commit");
  conn_->exec_script("COMMIT");
  failpoint("stager.after_commit");
  archive(file);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  if (meta.kind == spool::Kind::run_end) {
    ++totals.run_ends;
    log::info("stager.run_end", "entity={} run_id={} mode={} pages={} records={}", entity_.name,
              meta.run_id, meta.mode, meta.pages, meta.records);
    return Outcome::run_end;
  }
  ++totals.files_loaded;
  totals.records += counts.records;
  totals.staged += counts.staged;
  totals.duplicates += counts.duplicates;
  totals.flagged += counts.flagged;
  log::info("stager.file_loaded",
            "entity={} file={} records={} staged={} duplicates={} flagged={} ms={}", entity_.name,
            file.filename().string(), counts.records, counts.staged, counts.duplicates,
            counts.flagged, ms);
  return Outcome::loaded;
}

// Reads the page's records, drops repeats inside the page, claims the rest against the other
// workers, and stages first what no earlier load is staging, then the remainder in turn.
FileLoader::Counts FileLoader::stage_page(spool::PageReader& reader, std::int64_t ledger_id,
                                          Path path, std::optional<InFlight::Claim>& claim) {
  Counts counts;
  rows_.clear();
  seen_.clear();
  spool::Record rec;
  while (reader.next(rec, id_path_)) {
    ++counts.records;
    Digest d = md5(rec.json);
    if (!seen_.insert(d).second) {
      ++counts.duplicates;
      continue;
    }
    rows_.push_back({rec.json, std::move(rec.external_id), std::move(rec.invalid_reason), d});
  }
  std::vector<Digest> digests;
  digests.reserve(rows_.size());
  for (const auto& r : rows_) digests.push_back(r.digest);
  std::vector<bool> first;
  claim.emplace(in_flight_.claim(digests, first));
  std::vector<const Row*> now, later;
  for (std::size_t i = 0; i < rows_.size(); ++i) (first[i] ? now : later).push_back(&rows_[i]);
  stage_rows(now, reader.meta(), ledger_id, path, counts);
  for (const Row* r : later) claim->wait_turn(r->digest);
  stage_rows(later, reader.meta(), ledger_id, path, counts);
  return counts;
}

// Stages `rows` in batches of staging.batch_records; what is already in stg_ is a duplicate.
void FileLoader::stage_rows(std::vector<const Row*>& rows, const spool::Meta& meta,
                            std::int64_t ledger_id, Path path, Counts& counts) {
  std::size_t batch = static_cast<std::size_t>(config_.staging_batch_records);
  for (std::size_t start = 0; start < rows.size(); start += batch) {
    if (start > 0 && stop_.stop_requested()) throw Interrupted();
    std::vector<const Row*> part(
        rows.begin() + static_cast<std::ptrdiff_t>(start),
        rows.begin() + static_cast<std::ptrdiff_t>(std::min(rows.size(), start + batch)));
    auto candidates = static_cast<int>(part.size());
    int staged = 0;
    if (path == Path::copy) {
      // One round trip asks the unique index which contents an earlier file staged.
      std::string array = "{";
      for (const Row* r : part) {
        if (array.size() > 1) array += ',';
        array += r->digest.hex();
      }
      array += '}';
      auto existing = conn_->query(check_sql_, array);
      if (existing.rows() > 0) {
        std::unordered_set<std::string_view> known;
        for (int i = 0; i < existing.rows(); ++i) known.insert(existing.get(i, 0));
        std::erase_if(part, [&](const Row* r) { return known.count(r->digest.hex()) > 0; });
      }
      staged = copy_rows(part, meta, ledger_id);
      for (const Row* r : part)
        if (!r->invalid_reason.empty()) ++counts.flagged;
    } else {
      staged = insert_row_by_row(part, meta, ledger_id, counts.flagged);
    }
    counts.staged += staged;
    counts.duplicates += candidates - staged;
  }
}

// Binary COPY straight into stg_<entity>; returns the rows sent.
int FileLoader::copy_rows(const std::vector<const Row*>& rows, const spool::Meta& meta,
                          std::int64_t ledger_id) {
  if (rows.empty()) return 0;
  conn_->copy_begin(copy_sql_);
  try {
    std::int64_t fetched = pg::pg_epoch_micros(meta.fetched_at);
    copy_ = pg::BinaryCopyWriter();  // each COPY stream starts with the PGCOPY header
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
        conn_->copy_put(copy_.data());
        copy_.clear();
      }
      if (i == rows.size() / 2) failpoint("stager.mid_copy");
    }
    copy_.finish();
    conn_->copy_put(copy_.data());
    copy_.clear();
    conn_->copy_end();
  } catch (const pg::Error&) {
    conn_->copy_abort("stager error");
    throw;
  }
  return static_cast<int>(rows.size());
}

// The careful path, after Postgres refused a value on the COPY path: one INSERT per row under
// a savepoint; a row whose JSON Postgres refuses is kept as a JSON string, with the reason.
// Returns the rows staged.
int FileLoader::insert_row_by_row(const std::vector<const Row*>& rows, const spool::Meta& meta,
                                  std::int64_t ledger_id, int& flagged) {
  static constexpr std::string_view kColumns =
      "(raw_data, external_id, content_hash, fetched_at, run_id, ledger_id, invalid_reason)";
  std::string insert = fmt::format(
      "INSERT INTO {} {} VALUES ($1::jsonb, $2, $3::uuid, $4, $5, $6, $7) "
      "ON CONFLICT (content_hash) DO NOTHING",
      table_, kColumns);
  std::string fallback = fmt::format(
      "INSERT INTO {} {} VALUES (to_jsonb($1::text), $2, $3::uuid, $4, $5, $6, $7) "
      "ON CONFLICT (content_hash) DO NOTHING",
      table_, kColumns);
  std::string fetched = format_rfc3339(meta.fetched_at);
  int staged = 0;
  for (const Row* r : rows) {
    conn_->exec_script("SAVEPOINT record");
    auto reason = r->invalid_reason.empty() ? pg::Param{} : pg::param(r->invalid_reason);
    try {
      auto res = conn_->query(insert, without_nul(r->json), r->external_id, r->digest.hex(),
                              fetched, meta.run_id, ledger_id, reason);
      conn_->exec_script("RELEASE SAVEPOINT record");
      staged += static_cast<int>(res.affected());
      if (res.affected() > 0 && reason) ++flagged;
    } catch (const pg::Error& e) {
      if (!e.data_error()) throw;
      conn_->exec_script("ROLLBACK TO SAVEPOINT record");
      std::string why =
          fmt::format("postgres rejected the record as JSON ({}); kept as text", e.what());
      auto res = conn_->query(fallback, without_nul(r->json), r->external_id, r->digest.hex(),
                              fetched, meta.run_id, ledger_id, why);
      staged += static_cast<int>(res.affected());
      flagged += static_cast<int>(res.affected());
      log::warn("stager.record_kept_as_text", "entity={} reason={}", entity_.name,
                log::q(e.what()));
    }
  }
  return staged;
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
  conn_->exec_script("BEGIN");
  try {
    spool::Meta meta;
    auto ledger_id = claim_ledger(file, meta, "quarantined", original.size());
    if (ledger_id) {
      conn_->query(
          "INSERT INTO ingestd_quarantine (entity, file_name, error, raw_bytes, bytes) "
          "VALUES ($1, $2, $3, $4::bytea, $5)",
          entity_.name, file.filename().string(), reason, hex_bytea(original),
          static_cast<std::int64_t>(original.size()));
    }
    conn_->exec_script("COMMIT");
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
