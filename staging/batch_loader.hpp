// Loads a batch of spool files of one entity in one transaction (internal to staging/).
//
// Each file gets its ledger row in that transaction, so every file is still staged exactly
// once, all or nothing; batching only spares the per-transaction costs (commit fsync, round
// trips, COPY start-up) that dominate when pages are small.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include <simdjson.h>

#include "core/config.hpp"
#include "core/hash.hpp"
#include "core/pg.hpp"
#include "core/spool.hpp"
#include "staging/in_flight.hpp"
#include "staging/known_filter.hpp"
#include "staging/stager.hpp"

namespace ingestd::staging {

class BatchLoader {
 public:
  BatchLoader(const config::Config& config, const config::Entity& entity, const StopToken& stop,
              InFlight& in_flight, KnownFilter& known);

  // Stages `files`. Throws pg::Error on database failures (the transaction is rolled back,
  // the files stay in incoming/) and Interrupted when a stop was requested mid-batch.
  void load(pg::Connection& conn, const std::vector<std::filesystem::path>& files, Totals& totals);

  struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted by shutdown") {}
  };

 private:
  enum class Path { copy, row_by_row };
  struct Counts {
    int records = 0, staged = 0, duplicates = 0, flagged = 0;
  };
  struct File {
    std::filesystem::path path;
    std::unique_ptr<spool::PageReader> reader;  // owns the bytes the rows point into
    std::size_t bytes = 0;
    std::int64_t ledger_id = 0;  // 0: already in the ledger (a replay)
    Counts counts;
  };
  struct Row {
    std::string_view json;  // into its file's reader, valid for the whole load
    std::optional<std::string> external_id;
    std::string invalid_reason;
    Digest digest;
    std::size_t file;  // index into files_
  };

  void read_files(const std::vector<std::filesystem::path>& paths, Totals& totals);
  void attempt(Path path);
  void claim_ledger_rows();
  void lock_runs();
  void record_run_summary(const spool::Meta& m);
  void stage_records(Path path, std::optional<InFlight::Claim>& claim);
  void stage_rows(std::vector<const Row*>& rows, Path path);
  void copy_rows(const std::vector<const Row*>& rows);
  template <class AddRows>
  void copy_stream(std::string_view copy_sql, AddRows&& add_rows);
  void flush_if_full();
  void insert_row_by_row(const std::vector<const Row*>& rows);
  void copy_full_run_ids();
  void write_ledger_counts();
  void notify_reconcilers();
  void finish(Totals& totals, std::chrono::steady_clock::time_point started);
  void quarantine(const std::filesystem::path& file, std::string_view bytes,
                  const std::string& reason);
  void rollback() noexcept;

  pg::Connection* conn_ = nullptr;  // set for the duration of load()
  const config::Config& config_;
  const config::Entity& entity_;
  const StopToken& stop_;
  InFlight& in_flight_;
  KnownFilter& known_;
  bool check_all_ = false;  // this batch: ask the database about every hash
  std::string table_;       // quoted stg_<entity>
  std::vector<std::string> id_path_;
  std::string check_sql_;
  std::string copy_sql_;
  simdjson::ondemand::parser parser_;
  std::vector<File> files_;
  std::vector<Row> rows_;
  pg::BinaryCopyWriter copy_;
};

}  // namespace ingestd::staging
