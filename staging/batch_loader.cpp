#include "staging/batch_loader.hpp"

#include <chrono>
#include <climits>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/failpoint.hpp"
#include "core/files.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "core/stop.hpp"

namespace ingestd::staging {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kCopyFlushBytes = 1 << 20;
constexpr int kMaxConflictRetries = 5;

}  // namespace

BatchLoader::BatchLoader(const config::Config& config, const config::Entity& entity,
                         const StopToken& stop, InFlight& in_flight, KnownFilter& known)
    : config_(config),
      entity_(entity),
      stop_(stop),
      in_flight_(in_flight),
      known_(known),
      table_(pg::Identifier("stg_" + entity.name).quoted()),
      id_path_(spool::split_path(entity.id_path)),
      check_sql_(
          fmt::format("SELECT replace(content_hash::text, '-', '') FROM {} WHERE content_hash = "
                      "ANY($1::uuid[])",
                      table_)),
      copy_sql_(fmt::format("COPY {} (raw_data, external_id, content_hash, fetched_at, run_id, "
                            "ledger_id, invalid_reason) FROM STDIN (FORMAT binary)",
                            table_)) {
  spool::use_max_depth(parser_);
}

void BatchLoader::rollback() noexcept {
  try {
    if (conn_->healthy()) conn_->exec_script("ROLLBACK");
  } catch (const std::exception&) {
    // The connection is being dropped by the caller anyway.
  }
}

void BatchLoader::load(pg::Connection& conn, const std::vector<fs::path>& files, Totals& totals) {
  conn_ = &conn;
  auto started = std::chrono::steady_clock::now();
  read_files(files, totals);
  if (files_.empty()) return;
  Path path = Path::copy;
  check_all_ = false;
  for (int attempt_no = 0;; ++attempt_no) {
    try {
      attempt(path);
      break;
    } catch (const pg::Error& e) {
      if (e.data_error() && path == Path::copy) {
        // A record Postgres will not take as jsonb (e.g. a number beyond numeric's range)
        // failed the whole COPY. Load the batch again row by row: that row is kept as text
        // and flagged, the others are staged normally.
        log::warn("stager.row_by_row", "entity={} files={} error={}", entity_.name, files_.size(),
                  log::q(e.what()));
        path = Path::row_by_row;
        continue;
      }
      bool conflict = e.unique_violation() || e.sqlstate() == "40P01" || e.sqlstate() == "40001";
      if (conflict && attempt_no < kMaxConflictRetries) {
        // A stager in another process staged the same content meanwhile (or a deadlock with
        // it): the transaction was rolled back whole; the next attempt sees that content.
        log::warn("stager.conflict_retry", "entity={} files={} sqlstate={}", entity_.name,
                  files_.size(), e.sqlstate());
        check_all_ = true;  // the known-content filter cannot know the other process's rows
        continue;
      }
      throw;
    }
  }
  finish(totals, started);
}

// Parses every file of the batch once; retries reuse the rows. A file that is not a spool
// document is quarantined here, in its own transaction, and leaves the batch.
void BatchLoader::read_files(const std::vector<fs::path>& paths, Totals& totals) {
  files_.clear();
  rows_.clear();
  for (const auto& path : paths) {
    auto bytes = read_file(path);
    if (!bytes) continue;  // another stager archived it meanwhile
    File f{path, nullptr, bytes->size()};
    try {
      f.reader = std::make_unique<spool::PageReader>(parser_, std::move(*bytes));
    } catch (const spool::FormatError& e) {
      ++totals.files_quarantined;
      quarantine(path, {}, e.what());
      continue;
    }
    const auto& meta = f.reader->meta();
    if (meta.entity != entity_.name) {
      ++totals.files_quarantined;
      quarantine(path, f.reader->original(),
                 fmt::format("the file says entity '{}' but lies in incoming/{}", meta.entity,
                             entity_.name));
      continue;
    }
    spool::Record rec;
    std::size_t first_row = rows_.size();
    try {
      while (f.reader->next(rec, id_path_)) {
        ++f.counts.records;
        rows_.push_back({rec.json, std::move(rec.external_id), std::move(rec.invalid_reason),
                         md5(rec.json), files_.size()});
      }
    } catch (const spool::FormatError& e) {
      // On-Demand meets a broken record only when it reaches it: the envelope was fine, a
      // record is not JSON. Quarantined whole, like a file that is not JSON at all (left in
      // incoming/, it would fail its batch, and so its entity, on every turn).
      rows_.erase(rows_.begin() + static_cast<std::ptrdiff_t>(first_row), rows_.end());
      ++totals.files_quarantined;
      quarantine(path, f.reader->original(), e.what());
      continue;
    }
    files_.push_back(std::move(f));
  }
}

// One transaction: the ledger rows (the exactly-once gate), the records, the ledger counts.
void BatchLoader::attempt(Path path) {
  std::optional<InFlight::Claim> claim;  // released only after COMMIT or ROLLBACK
  for (auto& f : files_) f.counts = Counts{f.counts.records};
  conn_->exec_script("BEGIN");
  try {
    claim_ledger_rows();
    failpoint("stager.after_ledger");
    lock_runs();
    // Summaries before run_ends: a run_end closes the row a summary of its run opened.
    for (const auto& f : files_)
      if (f.ledger_id != 0 && f.reader->meta().kind == spool::Kind::run_summary)
        record_run_summary(f.reader->meta());
    for (const auto& f : files_) {
      const auto& m = f.reader->meta();
      if (f.ledger_id == 0 || m.kind != spool::Kind::run_end) continue;
      conn_->query(
          "INSERT INTO ingestd_fetch_runs (entity, run_id, source, mode, pages, records, "
          "completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
          entity_.name, m.run_id, m.source, m.mode, m.pages, m.records,
          format_rfc3339(m.fetched_at));
      // The marker proves the run complete even if its final summary never comes (the
      // fetcher died between the two): its sync_status row must not stay 'running'.
      conn_->query(
          "UPDATE sync_status SET status = 'success', completed_at = $3, records_fetched = "
          "least($4::bigint, 2147483647), heartbeat_at = $3 WHERE stage = 'fetcher' AND "
          "sync_type = $1 AND run_id = $2 AND status = 'running' AND heartbeat_at <= $3",
          entity_.name, m.run_id, format_rfc3339(m.fetched_at), m.records);
    }
    stage_records(path, claim);
    copy_full_run_ids();
    write_ledger_counts();
    notify_reconcilers();
    failpoint("stager.before_commit");
    conn_->exec_script("COMMIT");
    failpoint("stager.after_commit");
  } catch (...) {
    rollback();
    throw;
  }
}

// A run's summaries and its run_end may be staged by two workers at the same moment: each
// transaction first locks the runs it reports on (sorted, so two batches cannot deadlock), so
// the later one sees what the earlier committed.
void BatchLoader::lock_runs() {
  std::set<std::string> runs;
  for (const auto& f : files_)
    if (f.ledger_id != 0 && f.reader->meta().kind != spool::Kind::page)
      runs.insert(f.reader->meta().run_id);
  for (const auto& run : runs)
    conn_->query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                 "ingestd.fetch_run/" + entity_.name + "/" + run);
}

// The fetcher's sync_status row. Two stager workers may stage a run's summaries out of
// order: the newest summary (by its write time, the file's fetched_at) wins. A 'running'
// summary staged after its run_end (written earlier, staged later) reports the run's end.
void BatchLoader::record_run_summary(const spool::Meta& m) {
  const spool::RunSummary& r = m.summary;
  std::string statuses;
  for (const auto& [code, n] : r.statuses)
    statuses += fmt::format("{}{}:{}", statuses.empty() ? "" : ",", json_quote(code), n);
  double error_rate = r.requests > 0 ? 100.0 * static_cast<double>(r.failed_requests) /
                                           static_cast<double>(r.requests)
                                     : 0.0;
  double seconds = std::chrono::duration<double>((r.completed_at ? *r.completed_at : m.fetched_at) -
                                                 r.started_at)
                       .count();
  conn_->query(
      "INSERT INTO sync_status AS s (sync_type, stage, run_id, mode, started_at, completed_at, "
      "status, records_fetched, error_rate, error_summary, performance_metrics, host, pid, "
      "heartbeat_at) SELECT $1, 'fetcher', $2, $3, $4, CASE WHEN r.completed_at IS NOT NULL AND "
      "$6 = 'running' THEN r.completed_at ELSE $5::timestamptz END, CASE WHEN r.completed_at IS "
      "NOT NULL AND $6 = 'running' THEN 'success' ELSE $6 END, CASE WHEN r.completed_at IS NOT "
      "NULL AND $6 = 'running' THEN least(r.records, 2147483647) ELSE $7 END, least($8::float8, "
      "100), "
      "jsonb_build_object('error', $9::text, 'statuses', $10::jsonb), "
      "jsonb_build_object('pages', $11::bigint, 'requests', $12::bigint, 'retries', "
      "$13::bigint, 'throttled_seconds', $14::float8, 'duration_seconds', greatest($15::float8, "
      "0)), $16, $17, $18 FROM (SELECT NULL) one LEFT JOIN ingestd_fetch_runs r ON r.entity = "
      "$1 AND r.run_id = $2 AND r.completed_at >= $18::timestamptz\n"
      "ON CONFLICT (stage, sync_type, run_id) DO UPDATE SET mode = EXCLUDED.mode, started_at = "
      "EXCLUDED.started_at, completed_at = EXCLUDED.completed_at, status = EXCLUDED.status, "
      "records_fetched = EXCLUDED.records_fetched, error_rate = EXCLUDED.error_rate, "
      "error_summary = EXCLUDED.error_summary, performance_metrics = "
      "EXCLUDED.performance_metrics, host = EXCLUDED.host, pid = EXCLUDED.pid, heartbeat_at = "
      "EXCLUDED.heartbeat_at WHERE s.heartbeat_at <= EXCLUDED.heartbeat_at",
      entity_.name, m.run_id, m.mode.empty() ? pg::Param{} : pg::param(m.mode),
      format_rfc3339(r.started_at),
      r.completed_at ? pg::param(format_rfc3339(*r.completed_at)) : pg::Param{}, r.status,
      std::min<std::int64_t>(r.records, INT32_MAX), error_rate, r.error, "{" + statuses + "}",
      r.pages, r.requests, r.retries, r.throttled_seconds, seconds, r.host, r.pid,
      format_rfc3339(m.fetched_at));
}

void BatchLoader::claim_ledger_rows() {
  std::vector<pg::Param> names, outcomes, sources, runs, modes, pages, bytes, fetched;
  for (auto& f : files_) {
    const auto& m = f.reader->meta();
    f.ledger_id = 0;
    names.push_back(f.path.filename().string());
    outcomes.push_back(m.kind == spool::Kind::page      ? "loaded"
                       : m.kind == spool::Kind::run_end ? "run_end"
                                                        : "run_summary");
    sources.push_back(m.source);
    runs.push_back(m.run_id);
    modes.push_back(m.mode.empty() ? pg::Param{} : pg::param(m.mode));
    pages.push_back(std::to_string(m.page));
    bytes.push_back(std::to_string(f.bytes));
    fetched.push_back(format_rfc3339(m.fetched_at));
  }
  // The primary key (entity, file_name) is the gate: a file already in the ledger (a
  // replay) returns no row, and a second stager on the same file waits here for the first.
  auto r = conn_->query(
      "INSERT INTO ingestd_spool_ledger (entity, file_name, outcome, source, run_id, mode, "
      "page, bytes, fetched_at) SELECT $1, u.* FROM unnest($2::text[], $3::text[], $4::text[], "
      "$5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::timestamptz[]) AS u "
      "ON CONFLICT (entity, file_name) DO NOTHING RETURNING file_name, id",
      entity_.name, pg::array_literal(names), pg::array_literal(outcomes),
      pg::array_literal(sources), pg::array_literal(runs), pg::array_literal(modes),
      pg::array_literal(pages), pg::array_literal(bytes), pg::array_literal(fetched));
  std::map<std::string, std::int64_t, std::less<>> ids;
  for (int i = 0; i < r.rows(); ++i) ids.emplace(std::string(r.get(i, 0)), r.get_int(i, 1));
  for (auto& f : files_)
    if (auto it = ids.find(f.path.filename().string()); it != ids.end()) f.ledger_id = it->second;
}

// Drops content repeated inside the batch, claims the rest against this process's other
// workers, stages first what no earlier load is staging, then the remainder in turn.
void BatchLoader::stage_records(Path path, std::optional<InFlight::Claim>& claim) {
  std::unordered_set<Digest, DigestHash> seen;
  std::vector<const Row*> candidates;
  std::vector<Digest> digests;
  for (const auto& row : rows_) {
    auto& f = files_[row.file];
    if (f.ledger_id == 0) continue;  // a replayed file: staged before
    if (!seen.insert(row.digest).second) {
      ++f.counts.duplicates;
      continue;
    }
    candidates.push_back(&row);
    digests.push_back(row.digest);
  }
  std::vector<bool> first;
  claim.emplace(in_flight_.claim(digests, first));
  std::vector<const Row*> now, later;
  for (std::size_t i = 0; i < candidates.size(); ++i)
    (first[i] ? now : later).push_back(candidates[i]);
  stage_rows(now, path);
  for (const Row* r : later) claim->wait_turn(r->digest);
  stage_rows(later, path);
}

// Stages `rows` in batches of staging.batch_records; content already in stg_ is a duplicate.
void BatchLoader::stage_rows(std::vector<const Row*>& rows, Path path) {
  std::size_t batch = static_cast<std::size_t>(config_.staging_batch_records);
  for (std::size_t start = 0; start < rows.size(); start += batch) {
    if (stop_.stop_requested()) throw Interrupted();
    std::vector<const Row*> part(
        rows.begin() + static_cast<std::ptrdiff_t>(start),
        rows.begin() + static_cast<std::ptrdiff_t>(std::min(rows.size(), start + batch)));
    if (path == Path::row_by_row) {
      for (const Row* r : part) known_.add(r->digest);
      insert_row_by_row(part);
      continue;
    }
    // One round trip asks the unique index which contents an earlier file staged, for the
    // hashes the known-content filter cannot rule out.
    std::vector<pg::Param> hashes;
    for (const Row* r : part)
      if (check_all_ || known_.maybe_contains(r->digest)) hashes.push_back(r->digest.hex());
    auto existing = hashes.empty() ? std::optional<pg::Result>{}
                                   : conn_->query(check_sql_, pg::array_literal(hashes));
    if (existing && existing->rows() > 0) {
      std::unordered_set<std::string_view> known;
      for (int i = 0; i < existing->rows(); ++i) known.insert(existing->get(i, 0));
      std::erase_if(part, [&](const Row* r) {
        bool dup = known.count(r->digest.hex()) > 0;
        if (dup) ++files_[r->file].counts.duplicates;
        return dup;
      });
    }
    for (const Row* r : part) known_.add(r->digest);
    copy_rows(part);
  }
}

// One binary COPY stream: `add_rows` appends rows to copy_ and calls flush_if_full().
template <class AddRows>
void BatchLoader::copy_stream(std::string_view copy_sql, AddRows&& add_rows) {
  conn_->copy_begin(copy_sql);
  try {
    copy_ = pg::BinaryCopyWriter();  // each COPY stream starts with the PGCOPY header
    add_rows();
    copy_.finish();
    conn_->copy_put(copy_.data());
    copy_.clear();
    conn_->copy_end();
  } catch (const pg::Error&) {
    conn_->copy_abort("stager error");
    throw;
  }
}

void BatchLoader::flush_if_full() {
  if (copy_.size() < kCopyFlushBytes) return;
  conn_->copy_put(copy_.data());
  copy_.clear();
}

// Binary COPY straight into stg_<entity>.
void BatchLoader::copy_rows(const std::vector<const Row*>& rows) {
  if (rows.empty()) return;
  copy_stream(copy_sql_, [&] {
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row* r = rows[i];
      auto& f = files_[r->file];
      const auto& meta = f.reader->meta();
      copy_.begin_row(7);
      copy_.add_jsonb(r->json);
      if (r->external_id)
        copy_.add_text(*r->external_id);
      else
        copy_.add_null();
      copy_.add_uuid(r->digest.bytes);
      copy_.add_int64(pg::pg_epoch_micros(meta.fetched_at));
      copy_.add_text(meta.run_id);
      copy_.add_int64(f.ledger_id);
      if (r->invalid_reason.empty()) {
        copy_.add_null();
      } else {
        copy_.add_text(r->invalid_reason);
        ++f.counts.flagged;
      }
      ++f.counts.staged;
      flush_if_full();
      if (i == rows.size() / 2) failpoint("stager.mid_copy");
    }
  });
}

// A full run's pages also list their ids: an unchanged record leaves no new staging row
// (one row per content), yet the run saw it and the reconciler must not delete it.
void BatchLoader::copy_full_run_ids() {
  bool any = false;
  for (const auto& f : files_) any = any || (f.ledger_id != 0 && f.reader->meta().mode == "full");
  if (!any) return;
  copy_stream("COPY ingestd_full_run_ids (entity, run_id, external_id) FROM STDIN (FORMAT binary)",
              [&] {
                for (const auto& row : rows_) {
                  const auto& f = files_[row.file];
                  if (f.ledger_id == 0 || f.reader->meta().mode != "full" || !row.external_id)
                    continue;
                  copy_.begin_row(3);
                  copy_.add_text(entity_.name);
                  copy_.add_text(f.reader->meta().run_id);
                  copy_.add_text(*row.external_id);
                  flush_if_full();
                }
              });
}

// Delivered at COMMIT (not at all on rollback): idle reconcilers start at once instead of at
// their next poll (core/pg.hpp kStagedChannel). New rows or a run's end marker are news.
void BatchLoader::notify_reconcilers() {
  bool news = false;
  for (const auto& f : files_)
    news = news || (f.ledger_id != 0 && (f.counts.staged > 0 || f.counts.flagged > 0 ||
                                         f.reader->meta().kind == spool::Kind::run_end));
  if (news) conn_->query("SELECT pg_notify($1, $2)", std::string(pg::kStagedChannel), entity_.name);
}

void BatchLoader::write_ledger_counts() {
  std::vector<pg::Param> ids, records, staged, duplicates, flagged;
  for (const auto& f : files_) {
    if (f.ledger_id == 0 || f.reader->meta().kind != spool::Kind::page) continue;
    ids.push_back(std::to_string(f.ledger_id));
    records.push_back(std::to_string(f.counts.records));
    staged.push_back(std::to_string(f.counts.staged));
    duplicates.push_back(std::to_string(f.counts.duplicates));
    flagged.push_back(std::to_string(f.counts.flagged));
  }
  if (ids.empty()) return;
  conn_->query(
      "UPDATE ingestd_spool_ledger l SET records = u.r, staged = u.s, duplicates = u.d, "
      "flagged = u.f FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[], $5::int[]) "
      "AS u(id, r, s, d, f) WHERE l.id = u.id",
      pg::array_literal(ids), pg::array_literal(records), pg::array_literal(staged),
      pg::array_literal(duplicates), pg::array_literal(flagged));
}

// After COMMIT: every file of the batch leaves incoming/ (a replay too: it is in the ledger).
void BatchLoader::finish(Totals& totals, std::chrono::steady_clock::time_point started) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  started)
                .count();
  auto day = std::chrono::system_clock::now();
  for (const auto& f : files_) {
    spool::move_to(f.path, spool::archive_dir(config_.spool_dir, entity_.name, day));
    const auto& m = f.reader->meta();
    std::string name = f.path.filename().string();
    if (f.ledger_id == 0) {
      ++totals.files_replayed;
      log::info("stager.file_replayed", "entity={} file={} reason={}", entity_.name, name,
                log::q("already in the ledger"));
    } else if (m.kind == spool::Kind::run_summary) {
      ++totals.run_summaries;
      log::debug("stager.run_summary", "entity={} run_id={} status={}", entity_.name, m.run_id,
                 m.summary.status);
    } else if (m.kind == spool::Kind::run_end) {
      ++totals.run_ends;
      log::info("stager.run_end", "entity={} run_id={} mode={} pages={} records={}", entity_.name,
                m.run_id, m.mode, m.pages, m.records);
    } else {
      ++totals.files_loaded;
      totals.records += f.counts.records;
      totals.staged += f.counts.staged;
      totals.duplicates += f.counts.duplicates;
      totals.flagged += f.counts.flagged;
      log::info("stager.file_loaded",
                "entity={} file={} records={} staged={} duplicates={} flagged={} batch_files={} "
                "batch_ms={}",
                entity_.name, name, f.counts.records, f.counts.staged, f.counts.duplicates,
                f.counts.flagged, files_.size(), ms);
    }
  }
}

}  // namespace ingestd::staging
