// Production tables from the configuration: created and extended by `ingestd migrate`
// (additive only), or checked when the user owns them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ingestd::pg {
class Connection;
}
namespace ingestd::config {
struct Config;
struct Column;
}  // namespace ingestd::config

namespace ingestd::reconciler {

struct SchemaReport {
  std::vector<std::string> created;   // tables
  std::vector<std::string> added;     // "table.column" and "table.constraint"
  std::vector<std::string> problems;  // what a person must fix; empty = ready
};

// Takes the migration lock, then for each reconciled entity (parents first): creates its table
// or adds missing columns and foreign keys; for a user-owned table only reports. A column of
// the wrong type is a problem, never altered.
SchemaReport ensure_tables(pg::Connection& conn, const config::Config& config);

// The SQL type of a configured column type (text, integer, ..., timestamptz -> timestamptz).
[[nodiscard]] std::string_view sql_type(std::string_view type);

}  // namespace ingestd::reconciler
