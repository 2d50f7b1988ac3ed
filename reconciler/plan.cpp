#include "reconciler/plan.hpp"

#include <map>

#include <fmt/format.h>

#include "core/pg.hpp"
#include "reconciler/schema.hpp"

namespace ingestd::reconciler {
namespace {

std::string literal(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

// 'a.b' -> '{"a","b"}' (segments were validated: no quotes, braces or commas; quoted, so a
// segment named null is a key, not a NULL element).
std::string jsonb_path(std::string_view dotted) {
  std::string out = "{\"";
  for (char c : dotted) out += c == '.' ? std::string("\",\"") : std::string(1, c);
  return literal(out + "\"}");
}

std::string value_at(std::string_view dotted) {
  return fmt::format("s.raw_data #> {}", jsonb_path(dotted));
}

std::string cast(const config::Column& c) {
  std::string text = fmt::format("(s.raw_data #>> {})", jsonb_path(c.path));
  if (c.type == "text") return text;
  if (c.type == "jsonb") return fmt::format("NULLIF({}, 'null'::jsonb)", value_at(c.path));
  return fmt::format("{}::{}", text, sql_type(c.type));
}

// The JSON types a column accepts, and how to say what it expected.
struct Accepts {
  std::vector<std::string_view> types;
  std::string_view expected;
};
Accepts accepts(std::string_view type) {
  if (type == "text") return {{"string", "number", "boolean"}, "a string"};
  if (type == "integer" || type == "bigint") return {{"number"}, "an integer"};
  if (type == "numeric") return {{"number", "string"}, "a number"};
  if (type == "boolean") return {{"boolean"}, "true or false"};
  if (type == "date") return {{"string"}, "a date string"};
  if (type == "timestamptz") return {{"string"}, "an RFC 3339 time string"};
  return {{}, "any JSON"};
}

std::string reason_expression(const config::Entity& e) {
  std::string sql = "CASE\n    WHEN s.invalid_reason IS NOT NULL THEN s.invalid_reason\n";
  sql += fmt::format("    WHEN s.external_id IS NULL THEN {}\n",
                     literal(fmt::format("no id at {}", e.id_path)));
  sql += fmt::format(
      "    WHEN jsonb_typeof({0}) NOT IN ('string', 'null') THEN {1} || jsonb_typeof({0})\n",
      value_at(e.updated_at_path),
      literal(fmt::format("{}: expected an RFC 3339 time string, got ", e.updated_at_path)));
  for (const auto& c : e.table.columns) {
    std::string v = value_at(c.path);
    std::string where = fmt::format("{} ({})", c.name, c.path);
    if (c.required)
      sql += fmt::format("    WHEN coalesce(jsonb_typeof({}), 'null') = 'null' THEN {}\n", v,
                         literal("missing required field " + where));
    auto a = accepts(c.type);
    if (a.types.empty()) continue;
    std::string list;
    for (auto t : a.types) list += literal(t) + ", ";
    sql +=
        fmt::format("    WHEN jsonb_typeof({0}) NOT IN ({1}'null') THEN {2} || jsonb_typeof({0})\n",
                    v, list, literal(fmt::format("{}: expected {}, got ", where, a.expected)));
    if (c.type == "integer" || c.type == "bigint")
      sql += fmt::format(
          "    WHEN jsonb_typeof({0}) = 'number' AND ({1}) !~ '^-?[0-9]+$' THEN {2} || ({1})\n", v,
          fmt::format("s.raw_data #>> {}", jsonb_path(c.path)),
          literal(fmt::format("{}: expected an integer, got ", where)));
  }
  return sql + "  END";
}

}  // namespace

Plan::Plan(const config::Config& config, const config::Entity& e)
    : entity(&e),
      staging(pg::Identifier("stg_" + e.name).quoted()),
      table(pg::Identifier(e.table.name).quoted()),
      temp_table("pg_temp." + pg::Identifier("ingestd_batch_" + e.name).quoted()) {
  const auto& cols = e.table.columns;
  auto q = [](const std::string& name) { return pg::Identifier(name).quoted(); };
  auto match_col = [&](const config::Column& c) { return q("ingestd_m_" + c.name); };

  // The batch, extracted once: staging bookkeeping, the verdict, then the typed columns.
  create_temp = fmt::format(
      "CREATE TEMP TABLE IF NOT EXISTS {} (ingestd_ctid tid, ingestd_stg_id bigint, "
      "ingestd_hash uuid, ingestd_ext_id text, ingestd_fetched timestamptz, ingestd_reason "
      "text, ingestd_raw jsonb, ingestd_src_updated timestamptz",
      temp_table);
  for (const auto& c : cols) create_temp += fmt::format(", {} {}", q(c.name), sql_type(c.type));
  for (const auto& c : cols)
    if (!c.match_column.empty()) create_temp += fmt::format(", {} text", match_col(c));
  create_temp += ") ON COMMIT DELETE ROWS";
  clear_temp = "DELETE FROM " + temp_table;

  std::string select = fmt::format(
      "SELECT s.ctid, s.id, s.content_hash, s.external_id, s.fetched_at, v.reason, "
      "s.raw_data,\n  CASE WHEN v.reason IS NULL THEN (s.raw_data #>> {})::timestamptz END",
      jsonb_path(e.updated_at_path));
  for (const auto& c : cols)
    select += fmt::format(",\n  CASE WHEN v.reason IS NULL THEN {} END", cast(c));
  for (const auto& c : cols)
    if (!c.match_column.empty())
      select += fmt::format(",\n  s.raw_data #>> {}", jsonb_path(c.match_path));
  // OFFSET 0 keeps the subquery from being pulled up: otherwise Postgres copies the whole CASE
  // into every expression that reads v.reason and evaluates it once per column (measured: a
  // 2000-row claim took 62-100 ms instead of 19-23 ms).
  std::string lateral =
      fmt::format("CROSS JOIN LATERAL (SELECT {} AS reason OFFSET 0) v", reason_expression(e));
  constexpr std::string_view kStagingColumns =
      "ctid, id, content_hash, external_id, fetched_at, raw_data, invalid_reason";
  claim_extract = fmt::format(
      "INSERT INTO {0}\n{1}\nFROM (SELECT {2} FROM {3} WHERE NOT processed AND next_attempt_at "
      "<= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) s\n{4}",
      temp_table, select, kStagingColumns, staging, lateral);
  claim_ids = fmt::format(
      "SELECT id FROM {} WHERE NOT processed AND next_attempt_at <= now() ORDER BY id LIMIT $1 "
      "FOR UPDATE SKIP LOCKED",
      staging);
  extract_ids = fmt::format(
      "INSERT INTO {0}\n{1}\nFROM (SELECT {2} FROM {3} WHERE id = ANY($1::bigint[]) AND NOT "
      "processed) s\n{4}",
      temp_table, select, kStagingColumns, staging, lateral);

  // Fuzzy links and placeholders, one group per referenced table, in the same global table
  // order for every entity (parents first), so concurrent batches lock rows in one order.
  auto order = config.reconciled_in_order();
  for (const config::Entity* target : order) {
    std::vector<const config::Column*> refs;
    for (const auto& c : cols)
      if (c.references == target->name) refs.push_back(&c);
    if (refs.empty()) continue;
    std::string parent = q(target->table.name);
    for (const auto* c : refs) {
      if (c->match_column.empty()) continue;
      Step s;
      s.fuzzy = true;
      s.target = target->table.name;
      s.params = {std::to_string(c->match_distance), e.name, c->name};
      s.sql = fmt::format(
          "WITH unknown AS (SELECT DISTINCT b.{1} AS unknown_id, b.{2} AS val FROM {0} b "
          "WHERE b.ingestd_reason IS NULL AND b.{1} IS NOT NULL AND b.{2} IS NOT NULL AND NOT "
          "EXISTS (SELECT 1 FROM {3} r WHERE r.id = b.{1}) AND length(b.{2}) <= 255),\n"
          "matched AS (SELECT u.unknown_id, u.val, m.id, m.d FROM unknown u CROSS JOIN LATERAL "
          "(SELECT r.id, d.d FROM {3} r CROSS JOIN LATERAL (SELECT CASE WHEN length(r.{4}) <= "
          "255 THEN levenshtein_less_equal(r.{4}, u.val, $1::int) END AS d) d WHERE NOT "
          "r.is_placeholder AND r.deleted_at IS NULL AND d.d <= $1::int ORDER BY 2, r.id LIMIT "
          "1) m),\n"
          "fixed AS (UPDATE {0} b SET {1} = m.id FROM matched m WHERE b.{1} = m.unknown_id AND "
          "b.{2} = m.val "
          "RETURNING b.ingestd_ext_id, m.unknown_id, m.id, m.val, m.d)\n"
          "INSERT INTO ingestd_fuzzy_links (entity, record_id, column_name, unknown_id, "
          "matched_id, match_value, distance) SELECT DISTINCT ON (ingestd_ext_id, unknown_id) "
          "$2, ingestd_ext_id, $3, unknown_id, id, val, d FROM fixed ON CONFLICT DO NOTHING "
          "RETURNING matched_id",
          temp_table, q(c->name), match_col(*c), parent, q(c->match_column));
      steps.push_back(std::move(s));
    }
    Step s;
    s.target = target->table.name;
    std::string ids;
    for (const auto* c : refs)
      ids += fmt::format("{}SELECT b.{} AS id FROM {} b WHERE b.ingestd_reason IS NULL",
                         ids.empty() ? "" : " UNION ALL ", q(c->name), temp_table);
    std::string columns = "id, is_placeholder", values = "r.id, true";
    for (const auto& [column, value] : target->table.placeholder) {
      const auto* pc = target->table.find_column(column);
      s.params.push_back(value);
      std::string p = fmt::format("${}", s.params.size());
      columns += ", " + q(column);
      values += pc->type == "text" ? fmt::format(", replace({}::text, '{{id}}', r.id)", p)
                                   : fmt::format(", {}::{}", p, sql_type(pc->type));
    }
    s.sql = fmt::format(
        "INSERT INTO {} ({}) SELECT {} FROM (SELECT DISTINCT id FROM ({}) x WHERE id IS NOT "
        "NULL) r ORDER BY r.id ON CONFLICT (id) DO NOTHING RETURNING id",
        parent, columns, values, ids);
    if (target->name != e.name) {
      s.missing = fmt::format(
          "SELECT DISTINCT id FROM ({}) x WHERE id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {} "
          "p WHERE p.id = x.id) ORDER BY id",
          ids, parent);
      s.insert_ids = fmt::format(
          "INSERT INTO {} ({}) SELECT {} FROM unnest(${}::text[]) AS r(id) ORDER BY r.id ON "
          "CONFLICT (id) DO NOTHING RETURNING id",
          parent, columns, values, s.params.size() + 1);
    }
    steps.push_back(std::move(s));
  }

  // Upsert the newest version of each record; mark every claimed row with its outcome.
  std::string names = "id", values = "b.ingestd_ext_id", sets;
  for (const auto& c : cols) {
    names += ", " + q(c.name);
    values += ", b." + q(c.name);
    sets += fmt::format("{0} = EXCLUDED.{0}, ", q(c.name));
  }
  // jsonb equality, not the hash of the text: the same record with its keys in another order
  // is unchanged.
  constexpr std::string_view kChanged = "t.raw_data IS DISTINCT FROM EXCLUDED.raw_data";
  apply = fmt::format(
      "WITH up AS (\n"
      "  INSERT INTO {0} AS t ({1}, raw_data, content_hash, source_updated_at, fetched_at, "
      "is_placeholder, version, synced_at)\n"
      "  SELECT DISTINCT ON (b.ingestd_ext_id) {2}, b.ingestd_raw, b.ingestd_hash, "
      "b.ingestd_src_updated, b.ingestd_fetched, false, 1, now() FROM {3} b WHERE "
      "b.ingestd_reason IS NULL\n"
      "  ORDER BY b.ingestd_ext_id, b.ingestd_src_updated DESC NULLS LAST, b.ingestd_fetched "
      "DESC, b.ingestd_stg_id DESC\n"
      "  ON CONFLICT (id) DO UPDATE SET {4}raw_data = EXCLUDED.raw_data, content_hash = "
      "EXCLUDED.content_hash, source_updated_at = EXCLUDED.source_updated_at,\n"
      "    fetched_at = CASE WHEN {5} THEN EXCLUDED.fetched_at ELSE greatest(t.fetched_at, "
      "EXCLUDED.fetched_at) END,\n"
      "    version = t.version + CASE WHEN {5} THEN 1 ELSE 0 END,\n"
      "    updated_at = CASE WHEN {5} THEN now() ELSE t.updated_at END,\n"
      "    is_placeholder = false, deleted_at = NULL, synced_at = now()\n"
      "  WHERE t.is_placeholder OR t.content_hash IS NULL OR\n"
      "    (coalesce(EXCLUDED.source_updated_at, '-infinity'), EXCLUDED.fetched_at) >=\n"
      "    (coalesce(t.source_updated_at, '-infinity'), coalesce(t.fetched_at, '-infinity'))\n"
      // What the upsert did, for applied_as (sql/008): RETURNING sees only the new row, so
      // xmax = 0 tells an insert (an upsert's update leaves its row lock in xmax),
      // updated_at = now() a content change in this transaction, and version 1 after an
      // update a placeholder (version 0) filled.
      "  RETURNING t.id, t.content_hash, CASE WHEN t.xmax = 0 THEN 'new' WHEN t.updated_at <> "
      "now() THEN 'unchanged' WHEN t.version = 1 THEN 'filled' ELSE 'changed' END AS how),\n"
      "marked AS (\n"
      "  UPDATE {6} s SET processed = true, processed_at = now(), processing_attempts = "
      "s.processing_attempts + 1, last_error = b.ingestd_reason,\n"
      "    outcome = CASE WHEN b.ingestd_reason IS NOT NULL THEN 'skipped' WHEN up.content_hash "
      "= b.ingestd_hash THEN 'applied' ELSE 'superseded' END,\n"
      "    applied_as = CASE WHEN b.ingestd_reason IS NULL AND up.content_hash = b.ingestd_hash "
      "THEN up.how END\n"
      "  FROM {3} b LEFT JOIN up ON up.id = b.ingestd_ext_id WHERE s.ctid = b.ingestd_ctid\n"
      "  RETURNING s.outcome, s.external_id, s.last_error, s.applied_as)\n"
      "SELECT outcome, count(*), min(external_id), min(last_error), applied_as FROM marked "
      "GROUP BY outcome, applied_as",
      table, names, values, temp_table, sets, kChanged, staging);

  skip_row = fmt::format(
      "UPDATE {} SET processed = true, processed_at = now(), processing_attempts = "
      "processing_attempts + 1, outcome = 'skipped', last_error = $2 WHERE id = $1 AND NOT "
      "processed RETURNING external_id",
      staging);
  retry_row = fmt::format(
      "UPDATE {} SET processing_attempts = processing_attempts + 1, last_error = $2,\n"
      "  next_attempt_at = now() + make_interval(secs => least($4::float8, $3::float8 * "
      "power(2, processing_attempts)) * (0.5 + random() / 2)),\n"
      "  processed = processing_attempts + 1 >= $5::int,\n"
      "  processed_at = CASE WHEN processing_attempts + 1 >= $5::int THEN now() END,\n"
      "  outcome = CASE WHEN processing_attempts + 1 >= $5::int THEN 'dead' END\n"
      "WHERE id = $1 AND NOT processed RETURNING external_id, processed, processing_attempts",
      staging);
  for (const auto& c : cols) {
    if (c.type == "text" || c.type == "jsonb") continue;
    diagnose.emplace_back(
        fmt::format("{} ({})", c.name, c.path),
        fmt::format("SELECT (($1::jsonb) #>> {})::{}", jsonb_path(c.path), sql_type(c.type)));
  }
  diagnose.emplace_back(e.updated_at_path, fmt::format("SELECT (($1::jsonb) #>> {})::timestamptz",
                                                       jsonb_path(e.updated_at_path)));
}

}  // namespace ingestd::reconciler
