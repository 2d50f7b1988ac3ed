#!/usr/bin/env bash
# Reconciler benchmark (issue 4). ROWS staged timeline entries (default 1,000,000) reference
# ~PIANOS pianos, ~CLIENTS clients and USERS users, of which only every EXISTING_EVERY-th
# (5 %) exists; every EXISTING_EVERY-th entry exists too, as an older version, so the upsert
# path is taken as well. The data is generated once, then copied (CREATE DATABASE ... TEMPLATE)
# into identical databases (one per side), and in the same run we time:
#   (a) `ingestd reconcile --once` (reconciler.workers WORKERS, batch_size BATCH_SIZE);
#   (b) the hand-written set-based SQL reference, one transaction (reconcile_bench.sql);
#   (c) the naive baseline on the first NAIVE_ROWS staged rows: one autocommitted statement
#       per record (its placeholders, its upsert and its staging row's outcome in one
#       statement, prepared once): one commit per record;
#   (c') the same rows as a naive loop writes them: separate autocommitted statements (a
#       placeholder INSERT for each parent not met before, the record's INSERT, its staging
#       row's UPDATE): ~3.5 commits per record.
# It prints rows/s for each, a/b, a/c (and a/c') and the reconciler's peak RSS, checks that
# (a) and (b) leave identical end states (per table: rows, placeholders, sum(version) and a checksum of
# every row except its timestamps), and shows where the server spent its time in (a) and (b)
# (log_min_duration_statement = 0 on those two databases; SPLIT=0 turns it off).
#   bash tests/bench/reconcile_bench.sh [BUILD_DIR] [ROWS]
# env: ROWS (1000000) PIANOS (50000) CLIENTS (20000) USERS (200) EXISTING_EVERY (20; 0: none)
#      NAIVE_ROWS (20000) WORKERS (2) BATCH_SIZE (config default) SPLIT (1) KEEP (keep the
#      work directory) ALT_INGESTD (another ingestd binary, e.g. a change under test: also timed
#      as (a2) right after (a), on its own copy, and its end state checked like (a)'s)
# Targets: a/b >= 1.0, a/c >= 10, peak RSS <= 150 MB. They are printed (also as `RESULT ...`
# lines for tests/bench/run_all.sh), not enforced: the script fails only if a command fails,
# the end states of (a) and (b) differ or a naive baseline did not apply its rows.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
rows="${2:-${ROWS:-1000000}}"
pianos="${PIANOS:-50000}"
clients="${CLIENTS:-20000}"
users="${USERS:-200}"
every="${EXISTING_EVERY:-20}"
naive_rows="${NAIVE_ROWS:-20000}"
[ "$naive_rows" -gt "$rows" ] && naive_rows=$rows
workers="${WORKERS:-2}"
batch="${BATCH_SIZE:-}"
split="${SPLIT:-1}"

[ -x "$build/ingestd" ] || { echo "build first: cmake --build $build" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed (bash deploy/install-deps.sh)" >&2; exit 2; }
source "$root/tests/pg.sh"
work="$(mktemp -d /tmp/ingestd-reconcile-bench.XXXXXX)"
trap 'pg_stop; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"' EXIT INT TERM
pg_start "$work/pg"
q() { psql -X -Atq -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
now() { date +%s.%N; }
log_size() { stat -c %s "$PG_DIR/server.log"; }

# run_measured NAME CMD...: runs CMD with stdout/stderr in $work/NAME.{out,err}; writes
# "wall_s peak_rss_kb cpu_s" to $work/NAME.m. Peak RSS from /usr/bin/time when installed
# (package `time`), else from the kernel's high-water mark, VmHWM, polled until the exit.
run_measured() {
  local name=$1 t0 t1 rc=0 rss=0 cpu=0 u=0 s=0
  shift
  t0=$(now)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "%M %U %S" -o "$work/$name.time" "$@" >"$work/$name.out" 2>"$work/$name.err" || rc=$?
    t1=$(now)
    # (a failed command adds a "Command exited with non-zero status" line first)
    read -r rss u s < <(tail -n 1 "$work/$name.time") || true
    cpu=$(python3 -c "print($u + $s)")
  else
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    local pid=$! v ticks=0
    while [ -r "/proc/$pid/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
      v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$v" ] && rss=$v
      v=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || true)
      [ -n "$v" ] && ticks=$v
      sleep 0.05
    done
    wait "$pid" || rc=$?
    t1=$(now)
    cpu=$(python3 -c "print($ticks / $(getconf CLK_TCK))")
  fi
  echo "$(python3 -c "print($t1 - $t0)") $rss $cpu" >"$work/$name.m"
  if [ "$rc" -ne 0 ]; then
    echo "FAILED ($rc): $*" >&2
    tail -n 30 "$work/$name.err" "$work/$name.out" >&2
    exit 1
  fi
}

write_config() {  # DATABASE FILE
  cat >"$2" <<YAML
database: {url: "postgresql://postgres@127.0.0.1:$PGPORT/$1"}
spool: {dir: "$work/spool"}
log: {level: info}
reconciler: {workers: $workers${batch:+, batch_size: $batch}}
sources:
  bench:
    base_url: http://127.0.0.1:9   # never called: staging is filled with SQL
    entities:
      clients:
        rest: {path: /rest/clients}
        table:
          columns:
            first_name: {path: firstName, type: text}
            last_name:  {path: lastName, type: text}
            email:      {path: email, type: text}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      users:
        rest: {path: /rest/users}
        table:
          columns:
            name: {path: name, type: text}
          placeholder: {name: "Unknown technician ({id})"}
      pianos:
        rest: {path: /rest/pianos}
        table:
          columns:
            serial:    {path: serialNumber, type: text}
            client_id: {path: client.id, type: text, references: clients}
          placeholder: {serial: "?"}
      timeline_entries:
        rest: {path: /rest/timeline_entries}
        table:
          columns:
            occurred_at: {path: occurredAt, type: timestamptz, required: true}
            minutes:     {path: minutes, type: integer}
            piano_id:    {path: piano.id, type: text, references: pianos}
            user_id:     {path: user.id, type: text, references: users}
            client_id:   {path: client.id, type: text, references: clients}
YAML
}

# --- the data, generated once ---------------------------------------------------------------
echo "generating $rows staged timeline entries (~$pianos pianos, ~$clients clients, $users users) ..."
q postgres "CREATE DATABASE gen"
alt="${ALT_INGESTD:-}"
for d in gen a b c alt; do write_config "$d" "$work/$d.yaml"; done
"$build/ingestd" migrate -c "$work/gen.yaml" >/dev/null 2>"$work/migrate.err" \
  || { cat "$work/migrate.err" >&2; exit 1; }
gen_vars=(-v rows="$rows" -v pianos="$pianos" -v clients="$clients" -v users="$users" -v every="$every")
t0=$(now)
# Record i is a pure function of i (hashint4 of i and offsets): the same data on every run.
# The OFFSET 0 fences keep the planner from evaluating the record expression three times.
psql -X -q -v ON_ERROR_STOP=1 -d gen "${gen_vars[@]}" <<'SQL'
SET TIME ZONE 'UTC';
SET work_mem = '512MB';
INSERT INTO stg_timeline_entries (raw_data, external_id, content_hash, fetched_at, run_id, ledger_id)
SELECT d, d ->> 'id', md5(d::text)::uuid, timestamptz '2026-11-20 00:00Z' + (i / 500) * interval '1 s',
       'bench', 1 + i / 500
FROM (
  SELECT i, format('{"id":"tme_%s","type":"%s","occurredAt":"%s","summary":"Visit %s - pitch raise and regulation, customer notes \"ok\"","notes":"Hammers reshaped, %s","piano":{"id":"pno_%s"},"user":{"id":"usr_%s"},"client":{"id":"cln_%s"},"minutes":%s,"billable":%s,"updatedAt":"%s"}',
      lpad(i::text, 10, '0'),
      (ARRAY['SERVICE', 'TUNING', 'NOTE', 'APPOINTMENT', 'INVOICE'])[1 + h1 % 5],
      to_char(timestamp '2026-01-01' + (h1 % 28000000) * interval '1 s', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
      h2 % 100000, left(m, 24),
      lpad((h2 % :pianos)::text, 6, '0'), lpad((h3 % :users)::text, 3, '0'),
      lpad((h4 % :clients)::text, 5, '0'), 15 + h3 % 180, (h4 % 2 = 0)::text,
      to_char(timestamp '2026-01-02' + (h1 % 28000000) * interval '1 s', 'YYYY-MM-DD"T"HH24:MI:SS".123Z"'))::jsonb AS d
  FROM (SELECT i, md5(i::text) AS m,
               hashint4(i) & 268435455 AS h1, hashint4(i + 300000000) & 268435455 AS h2,
               hashint4(i + 600000000) & 268435455 AS h3, hashint4(i + 900000000) & 268435455 AS h4
        FROM generate_series(1, :rows) i OFFSET 0) h OFFSET 0
) x
ORDER BY i;
SQL
if [ "$every" -gt 0 ]; then
  # Every EXISTING_EVERY-th parent exists as a real row, and every EXISTING_EVERY-th entry as
  # an older version without references (so the staged version updates it: version 2).
  psql -X -q -v ON_ERROR_STOP=1 -d gen "${gen_vars[@]}" <<'SQL'
SET TIME ZONE 'UTC';
INSERT INTO clients (id, first_name, last_name, email, raw_data, content_hash, source_updated_at, fetched_at, version, synced_at)
SELECT r ->> 'id', r ->> 'firstName', r ->> 'lastName', r ->> 'email', r, md5(r::text)::uuid,
       '2025-12-01Z', '2026-11-01Z', 1, now()
FROM (SELECT format('{"id":"cln_%s","firstName":"Ada%s","lastName":"Lovelace%s","email":"c%s@example.com","updatedAt":"2025-12-01T00:00:00Z"}',
                    lpad(k::text, 5, '0'), k, k, k)::jsonb AS r
      FROM generate_series(0, :clients - 1, :every) k) x;
INSERT INTO users (id, name, raw_data, content_hash, source_updated_at, fetched_at, version, synced_at)
SELECT r ->> 'id', r ->> 'name', r, md5(r::text)::uuid, '2025-12-01Z', '2026-11-01Z', 1, now()
FROM (SELECT format('{"id":"usr_%s","name":"Technician %s","updatedAt":"2025-12-01T00:00:00Z"}',
                    lpad(k::text, 3, '0'), k)::jsonb AS r
      FROM generate_series(0, :users - 1, :every) k) x;
INSERT INTO pianos (id, serial, client_id, raw_data, content_hash, source_updated_at, fetched_at, version, synced_at)
SELECT r ->> 'id', r ->> 'serialNumber', r #>> '{client,id}', r, md5(r::text)::uuid,
       '2025-12-01Z', '2026-11-01Z', 1, now()
FROM (SELECT format('{"id":"pno_%s","serialNumber":"SN-%s","client":{"id":"cln_%s"},"updatedAt":"2025-12-01T00:00:00Z"}',
                    lpad(k::text, 6, '0'), k, lpad((k * 7 % :clients / :every * :every)::text, 5, '0'))::jsonb AS r
      FROM generate_series(0, :pianos - 1, :every) k) x;
INSERT INTO timeline_entries (id, occurred_at, minutes, raw_data, content_hash, source_updated_at, fetched_at, version, synced_at)
SELECT r ->> 'id', (r ->> 'occurredAt')::timestamptz, (r ->> 'minutes')::int, r, md5(r::text)::uuid,
       '2025-12-31Z', '2026-11-01Z', 1, now()
FROM (SELECT format('{"id":"tme_%s","occurredAt":"2025-12-30T09:00:00Z","minutes":10,"updatedAt":"2025-12-31T00:00:00Z"}',
                    lpad(i::text, 10, '0'))::jsonb AS r
      FROM generate_series(:every, :rows, :every) i) x;
SQL
fi
q gen "VACUUM ANALYZE"
read -r staged_mb avg_bytes ref_p ref_c ref_u pre_p pre_c pre_u pre_t < <(q gen "
  SELECT pg_total_relation_size('stg_timeline_entries') / 1048576, avg(length(raw_data::text))::int,
         count(DISTINCT raw_data #>> '{piano,id}'), count(DISTINCT raw_data #>> '{client,id}'),
         count(DISTINCT raw_data #>> '{user,id}'), (SELECT count(*) FROM pianos),
         (SELECT count(*) FROM clients), (SELECT count(*) FROM users),
         (SELECT count(*) FROM timeline_entries)
  FROM stg_timeline_entries" | tr '|' ' ')
strategy=""
[ "$(q postgres "SHOW server_version_num")" -ge 150000 ] && strategy="STRATEGY FILE_COPY"
for d in a b c d ${alt:+alt}; do q postgres "CREATE DATABASE $d TEMPLATE gen $strategy"; done
if [ "$split" = 1 ]; then
  for d in a b ${alt:+alt}; do
    q postgres "ALTER DATABASE $d SET log_min_duration_statement = 0"
    q postgres "ALTER DATABASE $d SET log_lock_waits = on"
    q postgres "ALTER DATABASE $d SET deadlock_timeout = '10ms'"
  done
fi
printf 'generated in %.0f s: %s MB of staging (%s bytes per record), references to %s pianos, %s clients, %s users; existing: %s pianos, %s clients, %s users, %s entries\n' \
  "$(python3 -c "print($(now) - $t0)")" "$staged_mb" "$avg_bytes" "$ref_p" "$ref_c" "$ref_u" \
  "$pre_p" "$pre_c" "$pre_u" "$pre_t"

# --- (a) the reconciler ---------------------------------------------------------------------
echo "(a) ingestd reconcile --once ..."
q postgres "CHECKPOINT"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
off_a=$(log_size)
run_measured a "$build/ingestd" reconcile --once -c "$work/a.yaml"
end_a=$(log_size)
cat "$work/a.out"
if [ -n "$alt" ]; then
  echo "(a2) $alt reconcile --once ..."
  q postgres "CHECKPOINT"
  off_alt=$(log_size)
  run_measured alt "$alt" reconcile --once -c "$work/alt.yaml"
  end_alt=$(log_size)
fi

# --- (b) the set-based reference ------------------------------------------------------------
echo "(b) set-based SQL reference ..."
q postgres "CHECKPOINT"
off_b=$(log_size)
run_measured b psql -X -q -v ON_ERROR_STOP=1 -d b -f "$root/tests/bench/reconcile_bench.sql"
end_b=$(log_size)

# --- (c) and (c') the naive baselines ------------------------------------------------------
# Both take the first NAIVE_ROWS staged rows, each on its own fresh copy; psql sends one
# prepared statement at a time, each autocommitted (one commit, with its WAL flush, each).
echo "(c) naive: $naive_rows rows, one autocommitted statement per record ..."
{
  cat <<'SQL'
\set ON_ERROR_STOP on
SET TIME ZONE 'UTC';
PREPARE naive_one(bigint) AS
WITH s AS (SELECT id, raw_data AS d, content_hash, fetched_at FROM stg_timeline_entries
           WHERE id = $1 AND NOT processed),
pc AS (INSERT INTO clients (id, is_placeholder, first_name, last_name)
       SELECT d #>> '{client,id}', true, 'Unknown', '(' || (d #>> '{client,id}') || ')' FROM s
       WHERE d #>> '{client,id}' IS NOT NULL ON CONFLICT (id) DO NOTHING),
pu AS (INSERT INTO users (id, is_placeholder, name)
       SELECT d #>> '{user,id}', true, 'Unknown technician (' || (d #>> '{user,id}') || ')' FROM s
       WHERE d #>> '{user,id}' IS NOT NULL ON CONFLICT (id) DO NOTHING),
pp AS (INSERT INTO pianos (id, is_placeholder, serial)
       SELECT d #>> '{piano,id}', true, '?' FROM s
       WHERE d #>> '{piano,id}' IS NOT NULL ON CONFLICT (id) DO NOTHING),
up AS (INSERT INTO timeline_entries AS t (id, occurred_at, minutes, piano_id, user_id, client_id,
           raw_data, content_hash, source_updated_at, fetched_at, is_placeholder, version, synced_at)
       SELECT d ->> 'id', (d #>> '{occurredAt}')::timestamptz, (d #>> '{minutes}')::integer,
              d #>> '{piano,id}', d #>> '{user,id}', d #>> '{client,id}', d, content_hash,
              (d #>> '{updatedAt}')::timestamptz, fetched_at, false, 1, now() FROM s
       ON CONFLICT (id) DO UPDATE SET occurred_at = EXCLUDED.occurred_at,
           minutes = EXCLUDED.minutes, piano_id = EXCLUDED.piano_id, user_id = EXCLUDED.user_id,
           client_id = EXCLUDED.client_id, raw_data = EXCLUDED.raw_data,
           content_hash = EXCLUDED.content_hash, source_updated_at = EXCLUDED.source_updated_at,
           fetched_at = EXCLUDED.fetched_at, version = t.version + 1, updated_at = now(),
           is_placeholder = false, deleted_at = NULL, synced_at = now()
       WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash)
UPDATE stg_timeline_entries SET processed = true, processed_at = now(),
    processing_attempts = processing_attempts + 1, last_error = NULL, outcome = 'applied'
WHERE id = $1 AND NOT processed;
SQL
  q c "SELECT 'EXECUTE naive_one(' || id || ');' FROM stg_timeline_entries ORDER BY id LIMIT $naive_rows"
} >"$work/naive_c.sql"
q postgres "CHECKPOINT"
run_measured c psql -X -q -v ON_ERROR_STOP=1 -d c -f "$work/naive_c.sql"

echo "(c') naive: $naive_rows rows, separate autocommitted statements ..."
{
  cat <<'SQL'
\set ON_ERROR_STOP on
SET TIME ZONE 'UTC';
PREPARE pc(text) AS INSERT INTO clients (id, is_placeholder, first_name, last_name)
    VALUES ($1, true, 'Unknown', '(' || $1 || ')') ON CONFLICT (id) DO NOTHING;
PREPARE pu(text) AS INSERT INTO users (id, is_placeholder, name)
    VALUES ($1, true, 'Unknown technician (' || $1 || ')') ON CONFLICT (id) DO NOTHING;
PREPARE pp(text) AS INSERT INTO pianos (id, is_placeholder, serial)
    VALUES ($1, true, '?') ON CONFLICT (id) DO NOTHING;
PREPARE ins(jsonb, uuid, timestamptz) AS
INSERT INTO timeline_entries AS t (id, occurred_at, minutes, piano_id, user_id, client_id,
    raw_data, content_hash, source_updated_at, fetched_at, is_placeholder, version, synced_at)
VALUES ($1 ->> 'id', ($1 #>> '{occurredAt}')::timestamptz, ($1 #>> '{minutes}')::integer,
        $1 #>> '{piano,id}', $1 #>> '{user,id}', $1 #>> '{client,id}', $1, $2,
        ($1 #>> '{updatedAt}')::timestamptz, $3, false, 1, now())
ON CONFLICT (id) DO UPDATE SET occurred_at = EXCLUDED.occurred_at,
    minutes = EXCLUDED.minutes, piano_id = EXCLUDED.piano_id, user_id = EXCLUDED.user_id,
    client_id = EXCLUDED.client_id, raw_data = EXCLUDED.raw_data,
    content_hash = EXCLUDED.content_hash, source_updated_at = EXCLUDED.source_updated_at,
    fetched_at = EXCLUDED.fetched_at, version = t.version + 1, updated_at = now(),
    is_placeholder = false, deleted_at = NULL, synced_at = now()
WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash;
PREPARE mark(bigint) AS UPDATE stg_timeline_entries SET processed = true, processed_at = now(),
    processing_attempts = processing_attempts + 1, last_error = NULL, outcome = 'applied'
WHERE id = $1 AND NOT processed;
SQL
  # The record itself travels as a literal, as a client would send it; a parent gets its
  # placeholder INSERT where the loop meets it first.
  q d "SELECT concat_ws(E'\\n',
         CASE WHEN row_number() OVER (PARTITION BY c ORDER BY id) = 1 THEN format('EXECUTE pc(%L);', c) END,
         CASE WHEN row_number() OVER (PARTITION BY u ORDER BY id) = 1 THEN format('EXECUTE pu(%L);', u) END,
         CASE WHEN row_number() OVER (PARTITION BY p ORDER BY id) = 1 THEN format('EXECUTE pp(%L);', p) END,
         format('EXECUTE ins(%L, %L, %L);', raw_data, content_hash, fetched_at),
         format('EXECUTE mark(%s);', id))
       FROM (SELECT id, raw_data, content_hash, fetched_at, raw_data #>> '{client,id}' AS c,
                    raw_data #>> '{user,id}' AS u, raw_data #>> '{piano,id}' AS p
             FROM stg_timeline_entries ORDER BY id LIMIT $naive_rows) s
       ORDER BY id"
} >"$work/naive_d.sql"
statements_d=$(grep -c '^EXECUTE' "$work/naive_d.sql")
q postgres "CHECKPOINT"
run_measured d psql -X -q -v ON_ERROR_STOP=1 -d d -f "$work/naive_d.sql"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
naive_check() {  # DATABASE -> "first-N rows in production" "staging rows applied"
  echo "$(q "$1" "SELECT count(*) FROM (SELECT content_hash FROM stg_timeline_entries ORDER BY id
                  LIMIT $naive_rows) s JOIN timeline_entries t USING (content_hash)")" \
       "$(q "$1" "SELECT count(*) FROM stg_timeline_entries WHERE processed AND outcome = 'applied'")"
}
read -r naive_done_c naive_marked_c < <(naive_check c)
read -r naive_done_d naive_marked_d < <(naive_check d)

# --- end states -----------------------------------------------------------------------------
state() {
  psql -X -q -v ON_ERROR_STOP=1 -d "$1" -P footer=off <<'SQL'
SELECT t AS "table", n AS "rows", placeholders, versions AS "sum(version)", checksum
FROM (
  SELECT 1 AS o, 'clients' AS t, count(*) AS n, count(*) FILTER (WHERE is_placeholder) AS placeholders,
         sum(version) AS versions,
         sum(('x' || left(md5((to_jsonb(x) - '{created_at,updated_at,synced_at}'::text[])::text), 15))::bit(60)::bigint) AS checksum
  FROM clients x
  UNION ALL SELECT 2, 'users', count(*), count(*) FILTER (WHERE is_placeholder), sum(version),
         sum(('x' || left(md5((to_jsonb(x) - '{created_at,updated_at,synced_at}'::text[])::text), 15))::bit(60)::bigint)
  FROM users x
  UNION ALL SELECT 3, 'pianos', count(*), count(*) FILTER (WHERE is_placeholder), sum(version),
         sum(('x' || left(md5((to_jsonb(x) - '{created_at,updated_at,synced_at}'::text[])::text), 15))::bit(60)::bigint)
  FROM pianos x
  UNION ALL SELECT 4, 'timeline_entries', count(*), count(*) FILTER (WHERE is_placeholder), sum(version),
         sum(('x' || left(md5((to_jsonb(x) - '{created_at,updated_at,synced_at}'::text[])::text), 15))::bit(60)::bigint)
  FROM timeline_entries x
  -- staging: processed rows, of which applied, sum(processing_attempts), rows left unsettled
  UNION ALL SELECT 5, 'stg (processed/applied/attempts)', count(*) FILTER (WHERE processed),
         count(*) FILTER (WHERE outcome = 'applied'), sum(processing_attempts),
         count(*) FILTER (WHERE NOT processed OR processed_at IS NULL OR last_error IS NOT NULL)
  FROM stg_timeline_entries
) s ORDER BY o
SQL
}
state a >"$work/state_a"
state b >"$work/state_b"
[ -z "$alt" ] || state alt >"$work/state_alt"

# --- where the server spent its time --------------------------------------------------------
split_report() {  # LABEL FROM_BYTE TO_BYTE
  [ "$split" = 1 ] || return 0
  # (not tail | head: head's early exit would SIGPIPE tail, and pipefail end the script)
  python3 -c 'import sys; f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]))
sys.stdout.buffer.write(f.read(int(sys.argv[3]) - int(sys.argv[2])))' \
    "$PG_DIR/server.log" "$2" "$3" >"$work/split.log"
  python3 - "$1" "$work/split.log" <<'PY'
import collections, re, sys
label, path = sys.argv[1], sys.argv[2]
dur = re.compile(r'\[(\d+)\] LOG:  duration: ([0-9.]+) ms  (statement|parse <unnamed>|bind <unnamed>|execute <unnamed>): (.*)')
acquired = re.compile(r'acquired \w+ on (\w+).* after ([0-9.]+) ms')
def kind(sql):
    m = re.match(r'INSERT INTO pg_temp\."ingestd_batch_(\w+)"', sql)
    if m: return f"claim + extract ({m.group(1)})"
    m = re.match(r'INSERT INTO "?(\w+)"? (AS t )?\(id, is_placeholder', sql)
    if m: return f"placeholders -> {m.group(1)}"
    m = re.match(r'INSERT INTO (\w+) AS t \(id, occurred_at', sql)
    if m: return f"upsert {m.group(1)}"
    if sql.startswith('WITH up AS'): return "apply (upsert + mark staging)"
    if sql.startswith('WITH unknown AS'): return "fuzzy links"
    if sql.startswith('SELECT DISTINCT id FROM (SELECT b.'): return "placeholders: missing ids (batch)"
    if sql.startswith('UPDATE stg_'): return "mark staging rows"
    if sql.startswith('INSERT INTO clients') or sql.startswith('INSERT INTO users') or sql.startswith('INSERT INTO pianos'):
        return "placeholders -> " + sql.split()[2]
    if sql in ('BEGIN', 'COMMIT', 'BEGIN;', 'COMMIT;'): return sql.rstrip(';')
    return "other"
total = collections.defaultdict(float); count = collections.Counter(); series = collections.defaultdict(list)
waits = collections.Counter(); wait_ms = collections.defaultdict(float)
pending = {}
for line in open(path, errors='replace'):
    m = dur.search(line)
    if m:
        pid, ms, phase, sql = m.group(1), float(m.group(2)), m.group(3), m.group(4).strip()
        k = kind(sql)
        total[k] += ms
        key = (pid, k)
        pending[key] = pending.get(key, 0.0) + ms
        if phase in ('statement', 'execute <unnamed>'):
            count[k] += 1
            series[k].append(pending.pop(key))
        continue
    m = acquired.search(line)
    if m:
        waits[m.group(1)] += 1; wait_ms[m.group(1)] += float(m.group(2))
allms = sum(total.values()) or 1.0
print(f"  {label}: server time by statement (parse + bind + execute, all connections)")
for k, v in sorted(total.items(), key=lambda kv: -kv[1]):
    if v < 0.005 * allms: continue
    s = series[k]; trend = ""
    if len(s) >= 20:
        t = max(1, len(s) // 10)
        trend = f"  first tenth {sum(s[:t])/t:7.1f} ms, last tenth {sum(s[-t:])/t:7.1f} ms"
    print(f"    {k:34s} {v/1000:8.2f} s {100*v/allms:5.1f} %  {count[k]:5d} x{trend}")
print(f"    {'total':34s} {allms/1000:8.2f} s")
for what, n in waits.items():
    print(f"    lock waits > 10 ms on {what}: {n}, {wait_ms[what]/1000:.2f} s in all")
PY
}

# --- summary --------------------------------------------------------------------------------
read -r wa rss_a cpu_a <"$work/a.m"
read -r wb _ _ <"$work/b.m"
read -r wc _ _ <"$work/c.m"
echo
echo "end state after (a) ingestd:"
cat "$work/state_a"
same=1
cmp -s "$work/state_a" "$work/state_b" || same=0
if [ "$same" = 1 ]; then
  echo "end state after (b) reference: identical"
else
  echo "end state after (b) reference: DIFFERENT"
  cat "$work/state_b"
fi
echo
# The reconciler's own log: from reconciler.started to reconciler.stopped (the rest of the wall
# time is process start, connecting and the final turns that find nothing).
python3 - "$work/a.err" <<'PY'
import re, sys
from datetime import datetime
ts = {}
for line in open(sys.argv[1], errors='replace'):
    m = re.match(r'ts=(\S+)Z .* event=reconciler\.(started|stopped) (.*)', line)
    if m: ts[m.group(2)] = (datetime.fromisoformat(m.group(1)), m.group(3).strip())
if 'started' in ts and 'stopped' in ts:
    print(f"  (a) ingestd log: reconciler.started -> reconciler.stopped "
          f"{(ts['stopped'][0] - ts['started'][0]).total_seconds():.2f} s ({ts['started'][1]})")
PY
split_report "(a) ingestd" "$off_a" "$end_a"
split_report "(b) reference" "$off_b" "$end_b"
if [ -n "$alt" ]; then
  split_report "(a2) $alt" "$off_alt" "$end_alt"
  read -r walt rss_alt _ <"$work/alt.m"
  python3 -c "print(f'\n  (a2) {$rows / $walt:,.0f} rows/s in {$walt:.2f} s, (a2)/(a) {$wa / $walt:.3f}, (a2)/(b) {$wb / $walt:.3f}, peak RSS {$rss_alt / 1024:.1f} MB')"
  if cmp -s "$work/state_alt" "$work/state_b"; then
    echo "  end state after (a2): identical"
  else
    echo "  end state after (a2): DIFFERENT"; cat "$work/state_alt"; same=0
  fi
fi
read -r wd _ _ <"$work/d.m"
python3 - "$rows" "$naive_rows" "$wa" "$wb" "$wc" "$wd" "$rss_a" "$cpu_a" "$(nproc)" "$workers" \
  "${batch:-2000 (default)}" "$every" "$statements_d" "$same" "$load_before" "$load_after" <<'PY'
import sys
rows, naive = int(sys.argv[1]), int(sys.argv[2])
wa, wb, wc, wd, rss, cpu = map(float, sys.argv[3:9])
cores, workers, batch, every, statements_d, same, load_before, load_after = sys.argv[9:17]
ra, rb, rc, rd = rows / wa, rows / wb, naive / wc, naive / wd
ok = lambda c: "met" if c else "NOT met"
pct = f"{100 / int(every):.0f} %" if int(every) > 0 else "none"
print(f"\nreconcile benchmark: {rows:,} staged timeline entries, {pct} of parents and entries existing, {cores} cores")
print(f"  (a)  ingestd reconcile --once, workers {workers}, batch {batch}")
print(f"                                              {wa:7.2f} s  {ra:>9,.0f} rows/s  (ingestd CPU {cpu:.2f} s)")
print(f"  (b)  set-based SQL, one transaction         {wb:7.2f} s  {rb:>9,.0f} rows/s")
print(f"  (c)  naive, {naive:,} rows, 1 autocommitted statement per record")
print(f"                                              {wc:7.2f} s  {rc:>9,.0f} rows/s")
print(f"  (c') naive, {naive:,} rows, {int(statements_d):,} autocommitted statements")
print(f"                                              {wd:7.2f} s  {rd:>9,.0f} rows/s")
print(f"  a/b   {ra/rb:6.2f}   (target >= 1.0: {ok(ra/rb >= 1.0)})")
print(f"  a/c   {ra/rc:6.2f}   (target >= 10: {ok(ra/rc >= 10)})")
print(f"  a/c'  {ra/rd:6.2f}")
print(f"  reconciler peak RSS  {rss/1024:.1f} MB  (target <= 150 MB: {ok(rss/1024 <= 150)})")
print(f"  end states of (a) and (b): {'identical' if same == '1' else 'DIFFERENT'}")
print(f"  load average before (a): {load_before}, after (c'): {load_after}  (other work on the machine skews the figures)")
print(f"reconcile: a={ra:,.0f} rows/s b={rb:,.0f} rows/s c={rc:,.0f} rows/s c'={rd:,.0f} rows/s "
      f"a/b={ra/rb:.2f} a/c={ra/rc:.1f} a/c'={ra/rd:.1f} rss={rss/1024:.1f} MB")
import json
def result(**f):
    print("RESULT bench=\"reconcile\" " + " ".join(f"{k}={json.dumps(v)}" for k, v in f.items()))
result(figure=f"rows/s, {rows:,} rows", value=f"{ra:.0f}", unit="rows/s", ref=f"{rb:.0f}",
       ref_what="(b) set-based SQL, one transaction", ratio=f"{ra/rb:.2f}", ratio_what="a/b",
       target=">= 1.0", met="yes" if ra / rb >= 1.0 else "NO")
result(figure=f"rows/s, {rows:,} rows", value=f"{ra:.0f}", unit="rows/s", ref=f"{rc:.0f}",
       ref_what=f"(c) naive, 1 autocommit per record ({naive:,} rows)", ratio=f"{ra/rc:.1f}",
       ratio_what="a/c", target=">= 10", met="yes" if ra / rc >= 10 else "NO")
result(figure=f"rows/s, {rows:,} rows", value=f"{ra:.0f}", unit="rows/s", ref=f"{rd:.0f}",
       ref_what=f"(c') naive, 1 autocommit per statement ({naive:,} rows)", ratio=f"{ra/rd:.1f}",
       ratio_what="a/c'", target="", met="")
result(figure="reconciler peak RSS", value=f"{rss/1024:.1f}", unit="MB", ref="", ref_what="",
       ratio="", ratio_what="", target="<= 150 MB", met="yes" if rss / 1024 <= 150 else "NO")
PY
[ "$same" = 1 ] || { echo "MISMATCH: the end states of (a) and (b) differ" >&2; exit 1; }
for v in "$naive_done_c" "$naive_marked_c" "$naive_done_d" "$naive_marked_d"; do
  [ "$v" = "$naive_rows" ] || { echo "MISMATCH: a naive baseline did not apply its $naive_rows rows" >&2; exit 1; }
done
