#!/usr/bin/env bash
# 5. Bad data: 1 % of the upstream records are broken, each in one of the simulator's ways
# (--bad-records: an object where a string belongs, an updatedAt that is no time, 1 MiB
# strings, arrays nested 2000 deep, bytes that are not UTF-8, \u0000, 1e999999, SQL-looking
# strings, no id, another record's id with different content). Proves that every one of them
# ends applied, superseded, skipped with a reason (stg_*.outcome / last_error) or quarantined
# (ingestd_quarantine), that no stage crashes or stops an entity for good, and that the good
# records around them (same pages) all arrive. The comparison leaves the bad ones out and
# counts them.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init 05_bad_data "${1:-}"
BAD_PERCENT="${CHAOS_BAD_PERCENT:-1}"
DURATION="${CHAOS_DURATION:-120}"

chaos_pg_start
sim_start --bad-records "$BAD_PERCENT"
write_config
start_stages
churn_start $((CHAOS_CHURN_TOTAL / DURATION)) "$CHAOS_CHURN_TOTAL"
sleep_watch "$DURATION"
final_sync 1200
compare

# Every bad record: how did it end? By its id in stg_<entity> (its newest staging row), else by
# its id inside a quarantined file; records without an id by the count of "no id" rows.
sim_ctl GET /control/dump | grep '"bad":' >"$WORK/bad.jsonl" || true
sql="$WORK/bad.sql"
{
  cat <<'SQL'
\set ON_ERROR_STOP 1
CREATE TEMP TABLE bad_lines (line text);
\copy bad_lines (line) FROM 'BAD' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TEMP TABLE bad AS SELECT l->>'entity' AS entity, l->>'id' AS id, l->>'bad' AS kind
  FROM (SELECT line::jsonb AS l FROM bad_lines) x;
CREATE TEMP TABLE last_row (entity text, external_id text, outcome text, invalid_reason text, last_error text);
CREATE TEMP TABLE ended (entity text, id text, kind text, how text);
SQL
  for e in "${CHAOS_ENTITIES[@]}"; do
    cat <<SQL
INSERT INTO last_row
SELECT DISTINCT ON (external_id) '$e', external_id, outcome, invalid_reason, last_error FROM stg_$e
WHERE external_id IN (SELECT id FROM bad WHERE entity = '$e') ORDER BY external_id, id DESC;
INSERT INTO ended
SELECT '$e', NULL, 'missing_id',
  CASE WHEN n <= (SELECT count(*) FROM stg_$e WHERE external_id IS NULL AND outcome = 'skipped') THEN 'skipped' ELSE 'nowhere' END
FROM (SELECT count(*) AS n FROM bad WHERE entity = '$e' AND id IS NULL) c, generate_series(1, c.n);
SQL
  done
  cat <<'SQL'
INSERT INTO ended
SELECT b.entity, b.id, b.kind,
  CASE WHEN s.outcome IS NOT NULL THEN s.outcome || CASE WHEN s.invalid_reason LIKE 'postgres rejected%' THEN ' (kept as text)' ELSE '' END
       WHEN q.file_name IS NOT NULL THEN 'quarantined'
       WHEN s.external_id IS NOT NULL THEN 'waiting'
       ELSE 'nowhere' END
FROM bad b
LEFT JOIN last_row s ON s.entity = b.entity AND s.external_id = b.id
LEFT JOIN LATERAL (SELECT file_name FROM ingestd_quarantine q WHERE s.outcome IS NULL AND q.entity = b.entity
                   AND position(convert_to(b.id, 'UTF8') IN q.raw_bytes) > 0 LIMIT 1) q ON true
WHERE b.id IS NOT NULL;
SELECT kind, how, count(*) FROM ended GROUP BY 1, 2 ORDER BY 1, 2;
\o REASONS
SELECT DISTINCT ON (b.kind) b.kind, left(replace(coalesce(s.last_error, s.invalid_reason), E'\n', ' '), 200)
FROM bad b JOIN last_row s ON s.entity = b.entity AND s.external_id = b.id
WHERE coalesce(s.last_error, s.invalid_reason) IS NOT NULL ORDER BY b.kind;
\o
SQL
} | sed -e "s|'BAD'|'$WORK/bad.jsonl'|" -e "s|REASONS|$WORK/bad_reasons.txt|" >"$sql"
psql "$PG_URL" -qtAX -F '|' -f "$sql" >"$WORK/bad.out" 2>"$WORK/bad.err" || die "the bad-record check failed: $(head -5 "$WORK/bad.err")"
log "how the bad records ended (kind, outcome, count):"
cat "$WORK/bad.out" >&2
log "a reason per kind:"
cat "$WORK/bad_reasons.txt" >&2 || true
unsettled=$(awk -F'|' '$2 == "nowhere" || $2 == "waiting" {s += $3} END {print s + 0}' "$WORK/bad.out")
settled=$(awk -F'|' '$2 != "nowhere" && $2 != "waiting" {s += $3} END {print s + 0}' "$WORK/bad.out")
quarantined=$(psqlq -c "SELECT count(*) FROM ingestd_quarantine")
# Each page with bytes that are not UTF-8 was spooled repaired (its records applied with U+FFFD)
# and, as received, quarantined: one quarantined file per such page the fetcher logged.
received=$(cat "$WORK/logs/fetcher.log" "$WORK/logs/final_fetch.log" | grep 'event=fetcher.invalid_utf8' | grep -vc 'received="(not written' || true)
not_utf8=$(psqlq -c "SELECT count(*) FROM ingestd_quarantine WHERE error LIKE '%UTF-8%'")
log "pages received with bytes that are not UTF-8: $received; quarantined files: $quarantined ($not_utf8 for UTF-8)"
if [ "$received" != "$quarantined" ] || [ "$not_utf8" != "$quarantined" ]; then
  log "every page received with invalid UTF-8 must be quarantined as received, and nothing else"
  VIOLATIONS=$((VIOLATIONS + 1))
fi
if [ "$unsettled" -gt 0 ]; then
  log "$unsettled bad records ended nowhere (not staged, not quarantined) or still wait"
  VIOLATIONS=$((VIOLATIONS + 1))
fi
REPORT_EXTRA="bad_settled=$settled bad_unsettled=$unsettled quarantined_files=$quarantined invalid_utf8_pages=$received outcomes=$(awk -F'|' '{printf "%s:%s:%s,", $1, $2, $3}' "$WORK/bad.out" | tr ' ' '_')"
report
