// Schema migrations: sql/NNN_name.sql embedded at build time, applied by migrate().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ingestd::pg {
class Connection;
}
namespace ingestd::config {
struct Config;
}

namespace ingestd::migrations {

// pg_advisory_lock key of every schema change ("ingestd" in ASCII, recognisable in pg_locks):
// two hosts running `ingestd migrate` at once take turns.
constexpr std::int64_t kMigrationLock = 0x696e6765737464;

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// In version order (generated from sql/ by sql/embed.cmake).
[[nodiscard]] const std::vector<Migration>& all();

struct Report {
  std::vector<std::string> applied;  // names applied by this call
  std::vector<std::string> drifted;  // applied earlier but the file changed since
  std::vector<std::string> staging_tables;
};

// Applies pending migrations, each in its own transaction, then ensures stg_<entity> for
// every configured entity. Holds a session advisory lock throughout, so two hosts running it
// at once take turns; running it again applies nothing.
Report migrate(pg::Connection& conn, const config::Config& config);

}  // namespace ingestd::migrations
