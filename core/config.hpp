// The configuration: one table of keys (config_keys.cpp) drives validation, defaults, the
// effective-config printout and docs/CONFIG.md, so the three cannot drift apart.
//
// Values may reference the environment as ${NAME}; a secret key `k` may instead be given as
// `k_file: /path` and is read from that file (systemd LoadCredential, Kubernetes secrets).
// Unknown keys, bad values and missing required keys are errors that name the key path and
// the line; all of them are reported at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ingestd::config {

enum class Type { string, integer, number, duration, boolean, choice, dsn, path, map };

struct Key {
  std::string_view path;  // dotted; '*' stands for a name the user chooses (a map key)
  Type type;
  std::string_view default_value;  // empty: no default
  bool required = false;
  bool secret = false;            // masked when printed; also accepted as <key>_file
  std::int64_t min = 0, max = 0;  // integers: the value; durations: milliseconds; 0,0 = none
  std::string_view choices;       // for Type::choice, separated by '|'
  std::string_view description;
};

[[nodiscard]] const std::vector<Key>& keys();

using Duration = std::chrono::milliseconds;

struct Auth {
  enum class Kind { none, bearer, api_key, oauth2 } kind = Kind::none;
  std::string bearer_token;
  std::string api_key_header;
  std::string api_key;
  std::string token_url;
  std::string client_id;
  std::string client_secret;
  std::string scope;
};

struct Source {
  std::string name;
  std::string base_url;
  Auth auth;
  double rate_per_second = 0;  // 0: no limit
  std::int64_t rate_burst = 1;
  Duration timeout{};
  std::int64_t retry_max_attempts = 1;
  Duration retry_initial{};
  Duration retry_max{};
  bool tls_verify = true;
  bool pipelining = true;               // fetcher/run.cpp: position_ahead()
  std::int64_t requests_in_flight = 1;  // with pipelining: pages asked ahead at once
};

// How an entity is fetched; the pagination names match the config values.
struct Request {
  enum class Api { graphql, rest } api = Api::graphql;
  std::string graphql_query;
  std::string rest_path;
  std::string pagination;  // relay | page_number | page | offset | next_link | none
  std::string records;     // path to the records in a response ("" = the body is the array)
  std::int64_t page_size = 100;
  // REST query parameter names
  std::string param_page, param_limit, param_offset, param_since, param_until;
};

// The production table an entity is reconciled into (reconciler/). Column names and the table
// name are validated identifiers; paths are dotted segments of [A-Za-z0-9_-].
struct Column {
  std::string name;
  std::string path;  // dotted path inside the record
  std::string type;  // text | integer | bigint | numeric | boolean | date | timestamptz | jsonb
  bool required = false;
  std::string references;  // entity name, or empty
  // Optional fuzzy match when the referenced id is unknown: a row of the referenced table
  // whose `match_column` is within `match_distance` (Levenshtein) of this record's value at
  // `match_path` is linked instead of a placeholder, and the link is recorded for review.
  std::string match_column;
  std::string match_path;
  std::int64_t match_distance = 0;
};

struct Table {
  std::string name;  // empty: the entity is staged but not reconciled
  bool user_owned = false;
  std::vector<Column> columns;
  std::map<std::string, std::string> placeholder;  // column -> template; {id} is the id
  [[nodiscard]] const Column* find_column(std::string_view column) const;
};

struct Entity {
  std::string source;
  std::string name;     // validated identifier: stg_<name> is its staging table
  std::string id_path;  // dotted path to the record id inside a record
  std::string updated_at_path;
  Request request;
  Duration every{};
  Duration full_every{};  // 0: never on schedule
  Duration overlap{};
  Table table;
};

struct Config {
  std::string origin;  // file name, for messages

  std::string database_url;
  Duration database_connect_timeout{};
  Duration database_retry_initial{};
  Duration database_retry_max{};

  std::filesystem::path spool_dir;
  Duration spool_archive_max_age{};
  double spool_min_free = 0;  // staging/stager.cpp: relieve_disk_pressure()

  Duration staging_poll_interval{};
  std::int64_t staging_workers = 0;
  std::int64_t staging_files_per_transaction = 0;
  std::int64_t staging_batch_records = 0;
  Duration staging_purge_after{};
  Duration staging_purge_interval{};
  std::int64_t staging_purge_batch = 0;

  std::string log_level;

  std::filesystem::path fetcher_state_dir;

  std::int64_t reconciler_workers = 0;
  std::int64_t reconciler_batch_size = 0;
  std::int64_t reconciler_max_attempts = 0;
  Duration reconciler_retry_initial{};
  Duration reconciler_retry_max{};
  Duration reconciler_poll_interval{};
  double reconciler_max_delete_fraction = 0;

  // host:port, or empty when the process serves no metrics (see parse_listen)
  std::string monitor_listen, fetcher_metrics_listen, staging_metrics_listen,
      reconciler_metrics_listen;
  Duration monitor_poll_interval{};
  double monitor_degraded_below = 50, monitor_failing_below = 20;
  std::string alerts_webhook_url;  // empty: no alerts
  Duration alerts_min_interval{};
  Duration alerts_timeout{};

  std::vector<Source> sources;
  std::vector<Entity> entities;

  // Every key as the program sees it (defaults filled in), concrete path -> text.
  std::map<std::string, std::string> effective;
  std::vector<std::string> secret_paths;

  [[nodiscard]] const Entity* find_entity(std::string_view name) const;
  [[nodiscard]] const Source* find_source(std::string_view name) const;
  // Entities that have a table, parents before the entities that reference them.
  [[nodiscard]] std::vector<const Entity*> reconciled_in_order() const;
};

struct LoadResult {
  std::optional<Config> config;
  std::vector<std::string> errors;  // "file:line: key.path: what is wrong"
};

[[nodiscard]] LoadResult load_file(const std::filesystem::path& file);
[[nodiscard]] LoadResult load_string(std::string_view yaml, std::string_view origin = "<string>");

// The effective configuration as YAML-ish text, secrets masked.
[[nodiscard]] std::string render_effective(const Config& config);
// docs/CONFIG.md, generated from keys().
[[nodiscard]] std::string render_reference();

[[nodiscard]] std::optional<Duration> parse_duration(std::string_view text);

// "127.0.0.1:9464", "[::1]:9464", "localhost:0": an IP literal (or localhost) and a port.
struct Listen {
  std::string host;
  std::uint16_t port = 0;
};
[[nodiscard]] std::optional<Listen> parse_listen(std::string_view text);

}  // namespace ingestd::config
