// Loads one spool file in one transaction with its ledger row (internal to staging/).
#pragma once

#include <filesystem>
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
#include "staging/stager.hpp"

namespace ingestd::staging {

enum class Outcome { loaded, replayed, quarantined, run_end, vanished };

class FileLoader {
 public:
  FileLoader(const config::Config& config, const config::Entity& entity, const StopToken& stop,
             InFlight& in_flight);

  // Throws pg::Error on database failures (the transaction is rolled back, the file stays in
  // incoming/) and Interrupted when a stop was requested mid-file.
  Outcome load(pg::Connection& conn, const std::filesystem::path& file, Totals& totals);

  struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted by shutdown") {}
  };

 private:
  enum class Path { copy, row_by_row };
  struct Row {
    std::string_view json;  // into the reader's buffer, valid for the whole load
    std::optional<std::string> external_id;
    std::string invalid_reason;
    Digest digest;
  };
  struct Counts {
    int records = 0, staged = 0, duplicates = 0, flagged = 0;
  };

  Outcome attempt(const std::filesystem::path& file, spool::PageReader& reader, Path path,
                  std::size_t bytes, Totals& totals);
  Counts stage_page(spool::PageReader& reader, std::int64_t ledger_id, Path path,
                    std::optional<InFlight::Claim>& claim);
  void stage_rows(std::vector<const Row*>& rows, const spool::Meta& meta, std::int64_t ledger_id,
                  Path path, Counts& counts);
  int copy_rows(const std::vector<const Row*>& rows, const spool::Meta& meta,
                std::int64_t ledger_id);
  int insert_row_by_row(const std::vector<const Row*>& rows, const spool::Meta& meta,
                        std::int64_t ledger_id, int& flagged);
  Outcome quarantine(const std::filesystem::path& file, std::string_view bytes,
                     const std::string& reason);
  std::optional<std::int64_t> claim_ledger(const std::filesystem::path& file,
                                           const spool::Meta& meta, std::string_view outcome,
                                           std::size_t bytes);
  void archive(const std::filesystem::path& file);
  void rollback() noexcept;

  pg::Connection* conn_ = nullptr;  // set for the duration of load()
  const config::Config& config_;
  const config::Entity& entity_;
  const StopToken& stop_;
  InFlight& in_flight_;
  std::string table_;  // quoted stg_<entity>
  std::vector<std::string> id_path_;
  std::string check_sql_;
  std::string copy_sql_;
  simdjson::ondemand::parser parser_;
  std::vector<Row> rows_;                        // the current file's records
  std::unordered_set<Digest, DigestHash> seen_;  // duplicates inside the current file
  pg::BinaryCopyWriter copy_;
};

}  // namespace ingestd::staging
