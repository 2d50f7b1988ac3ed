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
      {"spool.min_free", Type::number, "0.05", false, false, 0, 1, "",
       "Share of the spool's file system to keep free: below it the stager removes archived "
       "(already loaded) files, the oldest day first, before archive_max_age would, so that "
       "the fetcher can go on writing. 0 turns this off."},

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

      {"fetcher.state_dir", Type::path, "", false, false, 0, 0, "",
       "Where the fetcher keeps its checkpoints (default: <spool.dir>/state)."},

      {"reconciler.workers", Type::integer, "2", false, false, 1, 32, "",
       "Parallel reconcilers in one process, each with two connections (batches, and the "
       "placeholders of other tables, committed apart). More processes (and hosts) may run "
       "against the same database: they share the work."},
      {"reconciler.batch_size", Type::integer, "2000", false, false, 1, 100000, "",
       "Staging rows claimed and applied per transaction."},
      {"reconciler.max_attempts", Type::integer, "5", false, false, 1, 1000, "",
       "A row that failed this many times for a database reason is dead (kept, alerted, "
       "`ingestd requeue` puts it back)."},
      {"reconciler.retry_initial", Type::duration, "30s", false, false, 10 * ms, 1 * day, "",
       "Backoff after a row's first failure; doubles per attempt, with jitter."},
      {"reconciler.retry_max", Type::duration, "1h", false, false, 10 * ms, 7 * day, "",
       "Longest backoff between a row's attempts."},
      {"reconciler.poll_interval", Type::duration, "1s", false, false, 10 * ms, 1 * hour, "",
       "How often an idle reconciler looks for due staging rows. It also starts at once when "
       "a stager commits new rows (LISTEN/NOTIFY), so this bounds only retries and "
       "notifications that never come."},
      {"reconciler.max_delete_fraction", Type::number, "0.5", false, false, 0, 1, "",
       "A full run that would soft-delete more than this share of an entity's live rows "
       "deletes nothing and is reported instead (an upstream answering with an empty list "
       "must not empty the table). 1 turns the guard off."},

      {"monitor.listen", Type::string, "127.0.0.1:9464", false, false, 0, 0, "",
       "host:port where `ingestd monitor` (and `ingestd run`) serve /metrics, /health and "
       "/ready. Port 0 picks a free port (logged)."},
      {"monitor.poll_interval", Type::duration, "15s", false, false, 100 * ms, 1 * hour, "",
       "How often the monitor reads the database for its metrics, /health and alerts."},
      {"monitor.degraded_below", Type::number, "50", false, false, 0, 100, "",
       "An entity whose data freshness score (0-100) is below this is degraded."},
      {"monitor.failing_below", Type::number, "20", false, false, 0, 100, "",
       "An entity whose data freshness score is below this is failing (and alerted as stale)."},
      {"monitor.alerts.webhook_url", Type::string, "", false, true, 0, 0, "",
       "Slack-compatible incoming webhook that receives alerts; empty sends none."},
      {"monitor.alerts.min_interval", Type::duration, "10m", false, false, 1 * sec, 7 * day, "",
       "The same condition alerts at most once per interval; its recovery is sent once."},
      {"monitor.alerts.timeout", Type::duration, "5s", false, false, 100 * ms, 1 * minute, "",
       "Give up one webhook POST after this long (the monitor never waits on a dead webhook "
       "longer)."},
      {"fetcher.metrics_listen", Type::string, "", false, false, 0, 0, "",
       "host:port where `ingestd fetcher` serves its process metrics (/metrics); empty: none."},
      {"staging.metrics_listen", Type::string, "", false, false, 0, 0, "",
       "host:port where `ingestd stager` serves its process metrics (/metrics); empty: none."},
      {"reconciler.metrics_listen", Type::string, "", false, false, 0, 0, "",
       "host:port where `ingestd reconciler` serves its process metrics (/metrics); empty: "
       "none."},

      {"sources", Type::map, "", true, false, 0, 0, "", "Upstream APIs, by a name of your choice."},
      {"sources.*.base_url", Type::string, "", true, false, 0, 0, "",
       "Base URL: GraphQL requests are POSTed to it, REST paths are appended to it."},
      {"sources.*.auth.bearer_token", Type::string, "", false, true, 0, 0, "",
       "Static token sent as Authorization: Bearer."},
      {"sources.*.auth.api_key_header", Type::string, "", false, false, 0, 0, "",
       "Header that carries auth.api_key (e.g. X-Api-Key)."},
      {"sources.*.auth.api_key", Type::string, "", false, true, 0, 0, "", "API key."},
      {"sources.*.auth.oauth2.token_url", Type::string, "", false, false, 0, 0, "",
       "OAuth2 client-credentials token endpoint."},
      {"sources.*.auth.oauth2.client_id", Type::string, "", false, false, 0, 0, "",
       "OAuth2 client id."},
      {"sources.*.auth.oauth2.client_secret", Type::string, "", false, true, 0, 0, "",
       "OAuth2 client secret."},
      {"sources.*.auth.oauth2.scope", Type::string, "", false, false, 0, 0, "",
       "OAuth2 scope, if the server wants one."},
      {"sources.*.rate_limit.per_second", Type::number, "5", false, false, 0, 100000, "",
       "Requests per second for all entities of the source together; 0 means no limit."},
      {"sources.*.rate_limit.burst", Type::integer, "10", false, false, 1, 100000, "",
       "Requests that may go at once after a quiet period."},
      {"sources.*.timeout", Type::duration, "30s", false, false, 100 * ms, 10 * minute, "",
       "Whole-request timeout."},
      {"sources.*.retry.max_attempts", Type::integer, "8", false, false, 1, 100, "",
       "Attempts per page before the run stops (it resumes from its checkpoint next cycle)."},
      {"sources.*.retry.initial", Type::duration, "500ms", false, false, 10 * ms, 1 * minute, "",
       "First backoff after a failed request; doubles, with jitter."},
      {"sources.*.retry.max", Type::duration, "60s", false, false, 100 * ms, 1 * hour, "",
       "Longest backoff between attempts (a longer Retry-After is obeyed as given)."},
      {"sources.*.tls_verify", Type::boolean, "true", false, false, 0, 0, "",
       "Verify the server's TLS certificate. Turn off only for a test server."},
      {"sources.*.pipelining", Type::boolean, "true", false, false, 0, 0, "",
       "Send the next page's request as soon as a page arrives, before parsing it, where the "
       "next request does not depend on the page (page, page_number and offset after a full "
       "page; next_link from the Link header; never relay). Costs one request past the end of "
       "a run whose last page is short."},
      {"sources.*.requests_in_flight", Type::integer, "1", false, false, 1, 16, "",
       "How many of an entity's next pages may be asked at once, each on its own connection "
       "(page, page_number and offset; no effect on next_link and relay). Needs pipelining. "
       "Hides the upstream's round trip: N in flight fetch up to N times faster from a distant "
       "API, within rate_limit; up to N answers are held in memory. Costs up to N requests past "
       "the end of a run whose last page is short."},
      {"sources.*.entities", Type::map, "", true, false, 0, 0, "",
       "Entities of this source by name; the name gives the staging table stg_<name> and "
       "must be unique across sources (lowercase letters, digits, _)."},
      {"sources.*.entities.*.id", Type::string, "id", false, false, 0, 0, "",
       "Dotted path of the record's id inside one record (e.g. id, or node.id)."},
      {"sources.*.entities.*.updated_at", Type::string, "updatedAt", false, false, 0, 0, "",
       "Dotted path of the record's last-update time (RFC 3339): the incremental watermark."},
      {"sources.*.entities.*.graphql.query", Type::string, "", false, false, 0, 0, "",
       "GraphQL query. It receives $first/$after (relay) or $page/$perPage (page_number), "
       "and $since/$until (RFC 3339 or null)."},
      {"sources.*.entities.*.graphql.pagination", Type::choice, "relay", false, false, 0, 0,
       "relay|page_number|none",
       "How the query pages: pageInfo{hasNextPage endCursor}, page "
       "numbers from 0, or a single response."},
      {"sources.*.entities.*.rest.path", Type::string, "", false, false, 0, 0, "",
       "Path appended to base_url for a REST entity (GET)."},
      {"sources.*.entities.*.rest.pagination", Type::choice, "page", false, false, 0, 0,
       "page|offset|next_link|none",
       "Page numbers from 1, offsets, or the Link rel=\"next\" "
       "header."},
      {"sources.*.entities.*.rest.params.page", Type::string, "_page", false, false, 0, 0, "",
       "Query parameter for the page number."},
      {"sources.*.entities.*.rest.params.limit", Type::string, "_limit", false, false, 0, 0, "",
       "Query parameter for the page size."},
      {"sources.*.entities.*.rest.params.offset", Type::string, "offset", false, false, 0, 0, "",
       "Query parameter for the offset."},
      {"sources.*.entities.*.rest.params.since", Type::string, "updated_since", false, false, 0, 0,
       "", "Query parameter for the lower bound of updated-at."},
      {"sources.*.entities.*.rest.params.until", Type::string, "updated_until", false, false, 0, 0,
       "", "Query parameter for the upper bound of updated-at (repair windows)."},
      {"sources.*.entities.*.records", Type::string, "", false, false, 0, 0, "",
       "Where the records are in a response, e.g. data.allUsers.edges[].node; empty: the "
       "response body is the array of records."},
      {"sources.*.entities.*.page_size", Type::integer, "100", false, false, 1, 10000, "",
       "Records asked for per request."},
      {"sources.*.entities.*.schedule.every", Type::duration, "5m", false, false, 1 * sec, 30 * day,
       "", "Time between incremental runs."},
      {"sources.*.entities.*.schedule.full_every", Type::duration, "0", false, false, 0, 365 * day,
       "", "Time between full runs (which detect deletions); 0: only on request."},
      {"sources.*.entities.*.overlap", Type::duration, "5m", false, false, 0, 30 * day, "",
       "An incremental run starts this long before the last complete run's newest record, "
       "so records updated at the boundary are never missed (repeats are harmless)."},
      {"sources.*.entities.*.table.name", Type::string, "", false, false, 0, 0, "",
       "Production table (default: the entity name). An entity with a `table` block is "
       "reconciled; without one it is only staged."},
      {"sources.*.entities.*.table.user_owned", Type::boolean, "false", false, false, 0, 0, "",
       "The table is managed by you: `ingestd migrate` only checks it and names each missing "
       "or mistyped column, and never alters it."},
      {"sources.*.entities.*.table.columns", Type::map, "", false, false, 0, 0, "",
       "Columns by name, besides the ones every table has (id, raw_data, is_placeholder, "
       "content_hash, source_updated_at, fetched_at, version, created_at, updated_at, "
       "synced_at, deleted_at)."},
      {"sources.*.entities.*.table.columns.*.path", Type::string, "", true, false, 0, 0, "",
       "Dotted path of the value inside a record (e.g. piano.id)."},
      {"sources.*.entities.*.table.columns.*.type", Type::choice, "text", false, false, 0, 0,
       "text|integer|bigint|numeric|boolean|date|timestamptz|jsonb",
       "Column type; a record whose value does not fit is skipped with the reason."},
      {"sources.*.entities.*.table.columns.*.required", Type::boolean, "false", false, false, 0, 0,
       "", "A record without this value is skipped with the reason."},
      {"sources.*.entities.*.table.columns.*.references", Type::string, "", false, false, 0, 0, "",
       "Entity whose table this column points to (a real foreign key). An unknown id creates "
       "a placeholder row there."},
      {"sources.*.entities.*.table.columns.*.match.column", Type::string, "", false, false, 0, 0,
       "",
       "Fuzzy reference: column of the referenced table holding a natural key (needs the "
       "fuzzystrmatch extension)."},
      {"sources.*.entities.*.table.columns.*.match.path", Type::string, "", false, false, 0, 0, "",
       "Fuzzy reference: path of the natural key's value in this record."},
      {"sources.*.entities.*.table.columns.*.match.max_distance", Type::integer, "", false, false,
       0, 10, "",
       "Fuzzy reference: largest Levenshtein distance accepted (2 when not given). Links made "
       "this way are recorded in ingestd_fuzzy_links for review."},
      {"sources.*.entities.*.table.placeholder", Type::map, "", false, false, 0, 0, "",
       "Values for a placeholder row's columns, by column name; `{id}` is replaced by the "
       "referenced id (e.g. last_name: \"({id})\")."},
      {"sources.*.entities.*.table.placeholder.*", Type::string, "", false, false, 0, 0, "",
       "Placeholder value of this column."},
  };
  return table;
}

}  // namespace ingestd::config
