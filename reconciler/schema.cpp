#include "reconciler/schema.hpp"

#include <map>

#include <fmt/format.h>

#include "core/config.hpp"
#include "core/migrations.hpp"
#include "core/pg.hpp"

namespace ingestd::reconciler {
namespace {

struct Fixed {
  std::string_view name, type, definition;
};
// Every production table has these, whatever the config says.
constexpr Fixed kFixed[] = {
    {"id", "text", "text PRIMARY KEY"},
    {"raw_data", "jsonb", "jsonb"},
    {"is_placeholder", "boolean", "boolean NOT NULL DEFAULT false"},
    {"content_hash", "uuid", "uuid"},
    {"source_updated_at", "timestamp with time zone", "timestamptz"},
    {"fetched_at", "timestamp with time zone", "timestamptz"},
    {"version", "integer", "integer NOT NULL DEFAULT 0"},
    {"created_at", "timestamp with time zone", "timestamptz NOT NULL DEFAULT now()"},
    {"updated_at", "timestamp with time zone", "timestamptz NOT NULL DEFAULT now()"},
    {"synced_at", "timestamp with time zone", "timestamptz"},
    {"deleted_at", "timestamp with time zone", "timestamptz"},
};

// format_type() spelling, as information about existing columns comes back.
std::string_view catalog_type(std::string_view type) {
  if (type == "timestamptz") return "timestamp with time zone";
  return sql_type(type);
}

std::string fk_name(const config::Column& c) {
  return "ingestd_fk_" + c.name;
}

}  // namespace

std::string_view sql_type(std::string_view type) {
  static const std::map<std::string_view, std::string_view> types = {
      {"text", "text"},       {"integer", "integer"},         {"bigint", "bigint"},
      {"numeric", "numeric"}, {"boolean", "boolean"},         {"date", "date"},
      {"jsonb", "jsonb"},     {"timestamptz", "timestamptz"},
  };
  auto it = types.find(type);
  return it == types.end() ? std::string_view("text") : it->second;
}

SchemaReport ensure_tables(pg::Connection& conn, const config::Config& config) {
  SchemaReport report;
  pg::Transaction txn(conn);
  {
    conn.query("SELECT pg_advisory_xact_lock($1)", migrations::kMigrationLock);
    bool fuzzy = false;
    for (const config::Entity* e : config.reconciled_in_order())
      for (const auto& c : e->table.columns) fuzzy = fuzzy || !c.match_column.empty();
    if (fuzzy) {
      // levenshtein_less_equal() for match rules; contrib ships with Debian's server package.
      conn.exec_script("SAVEPOINT ingestd_ext");
      try {
        conn.exec_script("CREATE EXTENSION IF NOT EXISTS fuzzystrmatch");
        conn.exec_script("RELEASE SAVEPOINT ingestd_ext");
      } catch (const pg::Error& e) {
        if (e.connection_lost()) throw;
        conn.exec_script("ROLLBACK TO SAVEPOINT ingestd_ext");
        report.problems.push_back(fmt::format(
            "match rules need the fuzzystrmatch extension, which could not be created ({}): "
            "ask a superuser to run CREATE EXTENSION fuzzystrmatch",
            e.what()));
      }
    }
    for (const config::Entity* e : config.reconciled_in_order()) {
      const auto& t = e->table;
      pg::Identifier table(t.name);
      auto existing = conn.query(
          "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
          "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
          table.quoted());
      std::map<std::string, std::string, std::less<>> columns;
      for (int i = 0; i < existing.rows(); ++i)
        columns.emplace(std::string(existing.get(i, 0)), std::string(existing.get(i, 1)));
      bool exists = !columns.empty();

      if (!exists && t.user_owned) {
        report.problems.push_back(
            fmt::format("table {} (entity {}) is user_owned but does not exist: create it, or drop "
                        "user_owned to let migrate create it",
                        t.name, e->name));
        continue;
      }
      if (!exists) {
        std::string ddl = fmt::format("CREATE TABLE {} (", table.quoted());
        for (const auto& f : kFixed) ddl += fmt::format("\n  {} {},", f.name, f.definition);
        for (const auto& c : t.columns)
          ddl += fmt::format("\n  {} {},", pg::Identifier(c.name).quoted(), sql_type(c.type));
        ddl.back() = ')';
        conn.exec_script(ddl);
        report.created.push_back(t.name);
        for (const auto& f : kFixed) columns.emplace(std::string(f.name), std::string(f.type));
        for (const auto& c : t.columns) columns.emplace(c.name, std::string(catalog_type(c.type)));
      }

      auto check = [&](std::string_view name, std::string_view want, std::string_view add) {
        auto it = columns.find(name);
        if (it == columns.end()) {
          if (t.user_owned) {
            report.problems.push_back(
                fmt::format("table {}: column {} is missing (want {})", t.name, name, want));
          } else {
            conn.exec_script(fmt::format("ALTER TABLE {} ADD COLUMN {} {}", table.quoted(),
                                         pg::Identifier(name).quoted(), add));
            report.added.push_back(fmt::format("{}.{}", t.name, name));
          }
        } else if (it->second != want) {
          report.problems.push_back(fmt::format(
              "table {}: column {} is {}, the configuration says {} (migrate never changes a "
              "column's type: alter it yourself or rename the column in the configuration)",
              t.name, name, it->second, want));
        }
      };
      for (const auto& f : kFixed) check(f.name, f.type, f.name == "id" ? "text" : f.definition);
      for (const auto& c : t.columns) check(c.name, catalog_type(c.type), sql_type(c.type));

      // A placeholder value that does not fit its column would fail every batch that needs
      // a placeholder here.
      for (const auto& [column, value] : t.placeholder) {
        const auto* c = t.find_column(column);
        if (c->type == "text") continue;
        conn.exec_script("SAVEPOINT ingestd_value");
        try {
          conn.query(fmt::format("SELECT $1::{}", sql_type(c->type)), value);
          conn.exec_script("RELEASE SAVEPOINT ingestd_value");
        } catch (const pg::Error& err) {
          if (err.connection_lost()) throw;
          conn.exec_script("ROLLBACK TO SAVEPOINT ingestd_value");
          report.problems.push_back(
              fmt::format("table {}: placeholder value '{}' for column {} is not a {} ({})", t.name,
                          value, column, c->type, err.what()));
        }
      }

      // The monitor counts open placeholders every poll: a partial index keeps that a lookup
      // of the few placeholder rows instead of a scan of the whole table.
      if (!t.user_owned && columns.count("is_placeholder"))
        conn.exec_script(fmt::format(
            "CREATE INDEX IF NOT EXISTS {} ON {} (id) WHERE is_placeholder",
            pg::Identifier(t.name.substr(0, 50) + "_placeholders").quoted(), table.quoted()));

      if (columns.count("id")) {
        auto pk = conn.query(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND "
            "a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass($1) AND i.indisunique AND "
            "i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND a.attname = 'id'",
            table.quoted());
        if (pk.rows() == 0)
          report.problems.push_back(fmt::format(
              "table {}: id needs a primary key or unique index (upserts are keyed on it)",
              t.name));
      }

      for (const auto& c : t.columns) {
        if (c.references.empty()) continue;
        const auto* target = config.find_entity(c.references);
        auto fk = conn.query(
            "SELECT 1 FROM pg_constraint k JOIN pg_attribute a ON a.attrelid = k.conrelid AND "
            "a.attnum = k.conkey[1] WHERE k.conrelid = to_regclass($1) AND k.contype = 'f' AND "
            "k.confrelid = to_regclass($2) AND cardinality(k.conkey) = 1 AND a.attname = $3",
            table.quoted(), pg::Identifier(target->table.name).quoted(), c.name);
        if (fk.rows() > 0) continue;
        if (t.user_owned) {
          report.problems.push_back(
              fmt::format("table {}: column {} has no foreign key to {} (references: {} in the "
                          "configuration)",
                          t.name, c.name, target->table.name, c.references));
          continue;
        }
        // Our own constraint pointing elsewhere: the configuration changed the reference.
        std::string constraint = pg::Identifier(fk_name(c)).quoted();
        conn.exec_script(
            fmt::format("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}", table.quoted(), constraint));
        // NOT VALID first: enforced for every new row at once; the existing rows are checked
        // next, and rows pointing nowhere are reported instead of failing the whole migrate.
        conn.exec_script(fmt::format(
            "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} (id) NOT VALID",
            table.quoted(), constraint, pg::Identifier(c.name).quoted(),
            pg::Identifier(target->table.name).quoted()));
        report.added.push_back(fmt::format("{}.{}", t.name, fk_name(c)));
        conn.exec_script("SAVEPOINT ingestd_fk");
        try {
          conn.exec_script(
              fmt::format("ALTER TABLE {} VALIDATE CONSTRAINT {}", table.quoted(), constraint));
          conn.exec_script("RELEASE SAVEPOINT ingestd_fk");
        } catch (const pg::Error& err) {
          if (err.connection_lost()) throw;
          conn.exec_script("ROLLBACK TO SAVEPOINT ingestd_fk");
          report.problems.push_back(fmt::format(
              "table {}: existing rows have {} values that are not ids of {} ({}); the foreign "
              "key holds for new rows (NOT VALID); fix the rows, then ALTER TABLE {} VALIDATE "
              "CONSTRAINT {}",
              t.name, c.name, target->table.name, err.what(), t.name, fk_name(c)));
        }
      }
    }
  }
  txn.commit();
  return report;
}

}  // namespace ingestd::reconciler
