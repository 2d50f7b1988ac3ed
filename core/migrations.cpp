#include "core/migrations.hpp"

#include <map>

#include <fmt/format.h>

#include "core/config.hpp"
#include "core/hash.hpp"
#include "core/log.hpp"
#include "core/pg.hpp"

namespace ingestd::migrations {
namespace {
struct Unlock {
  pg::Connection& conn;
  ~Unlock() {
    try {
      conn.query("SELECT pg_advisory_unlock($1)", kMigrationLock);
    } catch (const std::exception&) {
      // The lock is session-scoped: closing the connection releases it anyway.
    }
  }
};
}  // namespace

Report migrate(pg::Connection& conn, const config::Config& config) {
  Report report;
  conn.query("SELECT pg_advisory_lock($1)", kMigrationLock);
  Unlock unlock{conn};
  conn.exec_script(R"(
    CREATE TABLE IF NOT EXISTS ingestd_schema_migrations (
        version    integer     PRIMARY KEY,
        name       text        NOT NULL,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    ))");
  std::map<int, std::string> applied;
  auto rows = conn.exec("SELECT version, checksum FROM ingestd_schema_migrations");
  for (int i = 0; i < rows.rows(); ++i)
    applied[static_cast<int>(rows.get_int(i, 0))] = std::string(rows.get(i, 1));

  for (const auto& m : all()) {
    std::string checksum = md5(m.sql).hex();
    if (auto it = applied.find(m.version); it != applied.end()) {
      if (it->second != checksum) {
        report.drifted.emplace_back(m.name);
        log::warn("migrate.drift", "migration={} reason={}", m.name,
                  log::q("applied earlier, file changed since; write a new migration instead"));
      }
      continue;
    }
    conn.exec_script("BEGIN");
    try {
      conn.exec_script(m.sql);
      conn.query(
          "INSERT INTO ingestd_schema_migrations (version, name, checksum) "
          "VALUES ($1, $2, $3)",
          m.version, m.name, checksum);
      conn.exec_script("COMMIT");
    } catch (...) {
      try {
        conn.exec_script("ROLLBACK");
      } catch (const std::exception&) {
      }
      throw;
    }
    log::info("migrate.applied", "migration={}", m.name);
    report.applied.emplace_back(m.name);
  }

  for (const auto& e : config.entities) {
    conn.query("SELECT ingestd_ensure_staging_table($1)", e.name);
    report.staging_tables.push_back("stg_" + e.name);
  }
  return report;
}

}  // namespace ingestd::migrations
