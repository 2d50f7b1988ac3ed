// The rare paths of the batch loader: a file that is not a spool document, and records
// Postgres refuses.

#include <fmt/format.h>

#include "core/files.hpp"
#include "core/log.hpp"
#include "staging/batch_loader.hpp"

namespace ingestd::staging {
namespace fs = std::filesystem;

namespace {

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

// Postgres text parameters end at a NUL byte; on the row-by-row path a record that still
// carries one is sent with U+FFFD in its place rather than truncated (jsonb then decides).
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

}  // namespace

// The careful path, after Postgres refused a value on the COPY path: one INSERT per row under
// a savepoint; a row whose JSON Postgres refuses is kept as a JSON string, with the reason.
void BatchLoader::insert_row_by_row(const std::vector<const Row*>& rows) {
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
  for (const Row* r : rows) {
    auto& f = files_[r->file];
    const auto& meta = f.reader->meta();
    std::string fetched = format_rfc3339(meta.fetched_at);
    auto ledger_id = f.ledger_id;
    conn_->exec_script("SAVEPOINT record");
    auto reason = r->invalid_reason.empty() ? pg::Param{} : pg::param(r->invalid_reason);
    try {
      auto res = conn_->query(insert, without_nul(r->json), r->external_id, r->digest.hex(),
                              fetched, meta.run_id, ledger_id, reason);
      conn_->exec_script("RELEASE SAVEPOINT record");
      bool staged = res.affected() > 0;
      ++(staged ? f.counts.staged : f.counts.duplicates);
      if (staged && reason) ++f.counts.flagged;
    } catch (const pg::Error& e) {
      if (!e.data_error()) throw;
      conn_->exec_script("ROLLBACK TO SAVEPOINT record");
      std::string why =
          fmt::format("postgres rejected the record as JSON ({}); kept as text", e.what());
      auto res = conn_->query(fallback, without_nul(r->json), r->external_id, r->digest.hex(),
                              fetched, meta.run_id, ledger_id, why);
      bool staged = res.affected() > 0;
      ++(staged ? f.counts.staged : f.counts.duplicates);
      if (staged) ++f.counts.flagged;
      log::warn("stager.record_kept_as_text", "entity={} reason={}", entity_.name,
                log::q(e.what()));
    }
  }
}

void BatchLoader::quarantine(const fs::path& file, std::string_view bytes,
                             const std::string& reason) {
  std::string original(bytes);
  // The reader never took the bytes (it failed in its constructor): read them again.
  if (original.empty()) original = read_file(file).value_or("");
  conn_->exec_script("BEGIN");
  try {
    // The ledger row makes a quarantine exactly-once too (a crash before the move replays).
    auto claimed = conn_->query(
        "INSERT INTO ingestd_spool_ledger (entity, file_name, outcome, bytes) VALUES ($1, $2, "
        "'quarantined', $3) ON CONFLICT (entity, file_name) DO NOTHING RETURNING id",
        entity_.name, file.filename().string(), static_cast<std::int64_t>(original.size()));
    if (claimed.rows() > 0) {
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
}

}  // namespace ingestd::staging
