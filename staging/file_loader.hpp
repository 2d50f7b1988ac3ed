// Loads one spool file in one transaction with its ledger row (internal to staging/).
#pragma once

#include <filesystem>
#include <string>
#include <unordered_set>
#include <vector>

#include <simdjson.h>

#include "core/config.hpp"
#include "core/hash.hpp"
#include "core/pg.hpp"
#include "core/spool.hpp"
#include "staging/stager.hpp"

namespace ingestd::staging {

enum class Outcome { loaded, replayed, quarantined, run_end, vanished };

class FileLoader {
 public:
  FileLoader(pg::Connection& conn, const config::Config& config, const config::Entity& entity,
             const StopToken& stop);

  // Throws pg::Error on database failures (the transaction is rolled back, the file stays in
  // incoming/) and Interrupted when a stop was requested mid-file.
  Outcome load(const std::filesystem::path& file, Totals& totals);

  struct Interrupted : std::runtime_error {
    Interrupted() : std::runtime_error("interrupted by shutdown") {}
  };

 private:
  struct Row {
    std::string_view json;
    std::optional<std::string> external_id;
    std::string invalid_reason;
    Digest digest;
  };
  struct Counts {
    int records = 0, staged = 0, duplicates = 0, flagged = 0;
  };

  Outcome load_page(spool::PageReader& reader, std::int64_t ledger_id, bool row_by_row,
                    Counts& counts);
  void stage_chunk(std::vector<Row>& chunk, const spool::Meta& meta, std::int64_t ledger_id,
                   bool row_by_row, Counts& counts);
  void insert_rows(const std::vector<const Row*>& rows, const spool::Meta& meta,
                   std::int64_t ledger_id, bool row_by_row);
  Outcome quarantine(const std::filesystem::path& file, std::string_view bytes,
                     const std::string& reason);
  std::optional<std::int64_t> claim_ledger(const std::filesystem::path& file,
                                           const spool::Meta& meta, std::string_view outcome,
                                           std::size_t bytes);
  void rollback() noexcept;

  pg::Connection& conn_;
  const config::Config& config_;
  const config::Entity& entity_;
  const StopToken& stop_;
  std::string table_;  // quoted stg_<entity>
  std::vector<std::string> id_path_;
  simdjson::ondemand::parser parser_;
  std::unordered_set<Digest, DigestHash> seen_;  // per file: duplicates inside one page
  pg::BinaryCopyWriter copy_;
};

}  // namespace ingestd::staging
