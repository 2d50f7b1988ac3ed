// The SQL that reconciles one entity, generated once from its configuration (internal to
// reconciler/). Identifiers are validated and quoted; record paths were checked by the config
// loader and are written as jsonb path literals; every value travels as a parameter.
//
// One batch is one transaction on one connection:
//   claim_extract   claims due staging rows (FOR UPDATE SKIP LOCKED) and extracts, casts and
//                   validates their columns into a session temp table;
//   fuzzy, placeholders  per referenced table, parents first: link by natural key, then
//                   insert a placeholder for every id still unknown. The placeholders of
//                   another table are inserted on a second connection, committed at once
//                   (`missing` finds them in the batch, `insert_ids` inserts them): a batch
//                   that held new parents locked until its commit made every other batch
//                   naming them wait (7-8 s of lock waits in a 1M-row backlog; 1.06-1.17x
//                   faster at 1M rows, 1.26-1.36x at 300,000: docs/BENCHMARKS.md);
//   apply           upserts the newest version of each record (newer wins) and marks every
//                   claimed staging row with its outcome, in one statement.
// When a statement fails, the batch is claimed again by id and bisected (claim_ids,
// extract_ids), so one bad row is isolated while the rest apply.
#pragma once

#include <string>
#include <vector>

#include "core/config.hpp"

namespace ingestd::reconciler {

struct Step {
  std::string sql;
  std::vector<std::string> params;  // fixed parameters ($1..)
  std::string target;               // the referenced table, for logs
  bool fuzzy = false;
  // Placeholders in another table than the entity's own: the batch's referenced ids missing
  // from it (run in the batch) and their insert from a text[] (the last parameter, after
  // `params`), autocommitted on its own connection. Empty for fuzzy steps and for a
  // self-reference, whose placeholders stay in the batch (sql): committed separately, they
  // could wait on a batch of the same table that waits on them.
  std::string missing;
  std::string insert_ids;
};

struct Plan {
  Plan(const config::Config& config, const config::Entity& entity);

  const config::Entity* entity;
  std::string staging;     // quoted stg_<entity>
  std::string table;       // quoted production table
  std::string temp_table;  // pg_temp."ingestd_batch_<entity>"
  std::string create_temp;
  std::string clear_temp;
  std::string claim_extract;  // $1 limit
  std::string claim_ids;      // $1 limit -> id
  std::string extract_ids;    // $1 bigint[]
  std::vector<Step> steps;    // fuzzy links and placeholders, in table order
  std::string apply;          // -> (outcome, count, example id, example error, applied_as)
  std::string skip_row;       // $1 id, $2 reason
  std::string retry_row;      // $1 id, $2 error, $3 initial s, $4 max s, $5 max attempts
  // Per typed column: SELECT (($1::jsonb) #>> path)::type, to name the column a value broke.
  std::vector<std::pair<std::string, std::string>> diagnose;  // (description, sql)
};

}  // namespace ingestd::reconciler
