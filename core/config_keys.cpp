// Every configuration key, once. Adding a key here makes it valid, documented
// (docs/CONFIG.md is generated from this table) and printed by `ingestd check-config`.
#include "core/config.hpp"

namespace ingestd::config {

namespace {
constexpr std::int64_t ms = 1;
constexpr std::int64_t sec = 1000 * ms;
constexpr std::int64_t minute = 60 * sec;
constexpr std::int64_t hour = 60 * minute;
constexpr std::int64_t day = 24 * hour;
}  // namespace

const std::vector<Key>& keys() {
  static const std::vector<Key> table = {
      {"database.url", Type::dsn, "", true, true, 0, 0, "",
       "libpq connection URI or conninfo. The password is never logged."},
      {"database.connect_timeout", Type::duration, "10s", false, false, 1 * sec, 5 * minute, "",
       "Give up one connection attempt after this long."},
      {"database.retry_initial", Type::duration, "500ms", false, false, 10 * ms, 1 * minute, "",
       "First wait after the database is unreachable; doubles on each failure."},
      {"database.retry_max", Type::duration, "30s", false, false, 100 * ms, 1 * hour, "",
       "Longest wait between reconnection attempts."},

      {"spool.dir", Type::path, "", true, false, 0, 0, "",
       "Spool directory shared by the fetcher and the stager (see docs/SPOOL.md)."},
      {"spool.archive_max_age", Type::duration, "7d", false, false, 0, 3650 * day, "",
       "Loaded spool files are kept in spool/archive this long; 0 keeps them forever."},

      {"staging.poll_interval", Type::duration, "2s", false, false, 50 * ms, 1 * hour, "",
       "How often the stager rescans the spool when no inotify event woke it."},
      {"staging.workers", Type::integer, "2", false, false, 1, 32, "",
       "Parallel loaders, each with its own connection and COPY stream (one core each)."},
      {"staging.files_per_transaction", Type::integer, "16", false, false, 1, 1000, "",
       "Spool files staged in one transaction, each with its own ledger row (spares commit "
       "and round-trip costs when pages are small)."},
      {"staging.batch_records", Type::integer, "5000", false, false, 1, 1'000'000, "",
       "Records checked and sent per COPY statement within a transaction."},
      {"staging.purge_after", Type::duration, "30d", false, false, 1 * minute, 3650 * day, "",
       "Processed staging rows older than this are deleted."},
      {"staging.purge_interval", Type::duration, "1h", false, false, 1 * sec, 7 * day, "",
       "How often the stager runs the purge."},
      {"staging.purge_batch", Type::integer, "5000", false, false, 1, 1'000'000, "",
       "Rows deleted per purge transaction (small batches keep locks and WAL bursts short)."},

      {"log.level", Type::choice, "info", false, false, 0, 0, "trace|debug|info|warn|error",
       "Lowest level written to stderr."},

      {"sources", Type::map, "", true, false, 0, 0, "", "Upstream APIs, by a name of your choice."},
      {"sources.*.entities", Type::map, "", true, false, 0, 0, "",
       "Entities of this source by name; the name gives the staging table stg_<name> and "
       "must be unique across sources (lowercase letters, digits, _)."},
      {"sources.*.entities.*.id", Type::string, "id", false, false, 0, 0, "",
       "Dotted path of the record's id inside one record (e.g. id, or node.id)."},
  };
  return table;
}

}  // namespace ingestd::config
