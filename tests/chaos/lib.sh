# shellcheck shell=bash
# Shared by the chaos scenarios (tests/chaos/NN_*.sh) and the soak (tests/soak/soak.sh).
# Source it after `set -euo pipefail`, then call chaos_init NAME BUILD_DIR. README.md beside
# this file says what each scenario proves.
#
#   chaos_init NAME BUILD_DIR   work dir /tmp/chaos-NAME-<pid>, a trap that stops everything
#   chaos_pg_start              throwaway PostgreSQL (tests/pg.sh) in $WORK/pg
#   chaos_pg_stop_now           immediate shutdown (like a crash of the server)
#   chaos_pg_start_again        the same cluster on the same port again
#   sim_start ARGS...           upstream_sim on a free port ($SIM_PORT); sim_ctl METHOD PATH [BODY]
#   churn_start PER_SECOND MAX  / churn_stop: the simulator's background changes
#   write_config                $CFG for the simulator (CFG_* variables tune it), then migrate
#   stage_start NAME CMD        `ingestd CMD -c $CFG` as a direct child (start_stages: fetcher,
#                               stager, 2 reconcilers); stage_kill_restart NAME / stage_stop NAME
#   stages_check                a stage that died on its own is a crash: counted, restarted
#   final_sync                  stop churn and fetcher, one full run per entity (final_fetch),
#                               wait for the drain
#   compare                     production vs the simulator's truth, record by record
#   report                      the figures; exits 1 on any violation
#
# Every server is a direct child of the scenario's shell (PID 1 reaps no orphans) except
# PostgreSQL, which pg_ctl starts and stops.

CHAOS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$CHAOS_DIR/../.." && pwd)"
# shellcheck source=../pg.sh
source "$REPO_DIR/tests/pg.sh"

# The data set: --size 22100 gives 22100 clients, 44200 pianos, 1105 users, 110500 timeline
# entries and 22100 invoices: 200 005 records.
CHAOS_SIZE="${CHAOS_SIZE:-22100}"
CHAOS_CHURN_TOTAL="${CHAOS_CHURN_TOTAL:-2000}"  # 1 % of the records change during a run
CHAOS_ENTITIES=(clients users pianos timeline_entries invoices)

declare -A STAGE_PID=() STAGE_CMD=()
EXTRA_PIDS=()  # other background helpers of a scenario, stopped by the trap
RESTARTS=0
CRASHES=0
CRASH_NOTES=()
VIOLATIONS=0
DRAIN_SECONDS=0
MOUNTED=""

log() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "${CHAOS_NAME:-chaos}" "$*" >&2; }
die() {
  log "FATAL: $*"
  exit 1
}

chaos_init() {
  CHAOS_NAME="$1"
  BUILD="$(cd "${2:?usage: $0 BUILD_DIR}" && pwd)"
  INGESTD="$BUILD/ingestd"
  SIM="$BUILD/tests/upstream_sim/upstream_sim"
  [ -x "$INGESTD" ] || die "no $INGESTD (cmake --build $BUILD --target ingestd upstream_sim)"
  [ -x "$SIM" ] || die "no $SIM (cmake --build $BUILD --target upstream_sim)"
  CHAOS_SEED="${CHAOS_SEED:-$(date +%s)}"
  RANDOM=$((CHAOS_SEED % 32768))
  WORK="/tmp/chaos-$CHAOS_NAME-$$"
  rm -rf "$WORK"
  mkdir -p "$WORK/logs"
  chmod 755 "$WORK"
  CFG="$WORK/ingestd.yaml"
  SPOOL="$WORK/spool"
  STARTED_AT=$(date +%s)
  trap chaos_cleanup EXIT
  trap 'exit 130' INT TERM
  log "work dir $WORK, seed $CHAOS_SEED (CHAOS_SEED=$CHAOS_SEED reruns the same random choices)"
}

chaos_cleanup() {
  local rc=$?
  set +e
  local name
  for name in "${!STAGE_PID[@]}"; do
    kill -TERM "${STAGE_PID[$name]}" 2>/dev/null
  done
  for name in "${!STAGE_PID[@]}"; do
    wait "${STAGE_PID[$name]}" 2>/dev/null
  done
  local pid
  for pid in "${EXTRA_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ -n "${SIM_PID:-}" ]; then
    kill -TERM "$SIM_PID" 2>/dev/null
    wait "$SIM_PID" 2>/dev/null
  fi
  pg_stop
  if [ -n "$MOUNTED" ]; then umount "$MOUNTED" 2>/dev/null; fi
  if [ "$rc" -eq 0 ] && [ -z "${CHAOS_KEEP:-}" ]; then
    rm -rf "$WORK"
  else
    log "kept $WORK (logs in $WORK/logs)"
  fi
  exit "$rc"
}

# ---- PostgreSQL ------------------------------------------------------------------------------

psqlq() { psql "$PG_URL" -qtAX -v ON_ERROR_STOP=1 "$@"; }

chaos_pg_start() {
  pg_start "$WORK/pg" >/dev/null
  # For the post-mortem of a failing run: the plan of any statement slower than 10 s, and
  # every autovacuum/autoanalyze, in $WORK/pg/server.log.
  psqlq -c "LOAD 'auto_explain'" -c "ALTER SYSTEM SET session_preload_libraries = 'auto_explain'" \
    -c "ALTER SYSTEM SET auto_explain.log_min_duration = '10s'" \
    -c "ALTER SYSTEM SET log_autovacuum_min_duration = 0" \
    -c "SELECT pg_reload_conf()" >/dev/null
  log "postgres on port $PGPORT"
}

# pg.sh has start and stop only; an outage needs the same cluster back on the same port.
chaos_pg_stop_now() {
  pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 30 stop >/dev/null
}

chaos_pg_start_again() {
  pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PG_DIR -c max_connections=200 -c shared_buffers=256MB -c synchronous_commit=on -c max_wal_size=4GB -c checkpoint_timeout=30min" \
    start >"$PG_DIR/pg_ctl.log" 2>&1 || {
    cat "$PG_DIR/pg_ctl.log" >&2
    return 1
  }
}

# ---- The simulator ---------------------------------------------------------------------------

sim_start() {
  "$SIM" --port 0 --seed "${CHAOS_SIM_SEED:-42}" --size "$CHAOS_SIZE" "$@" \
    >"$WORK/logs/sim.out" 2>"$WORK/logs/sim.err" &
  SIM_PID=$!
  local _
  for _ in $(seq 1 200); do
    if grep -q '^listening ' "$WORK/logs/sim.out" 2>/dev/null; then
      SIM_PORT="$(sed -n 's/^listening 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$WORK/logs/sim.out")"
      log "simulator on port $SIM_PORT ($*)"
      return 0
    fi
    kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited: $(cat "$WORK/logs/sim.err")"
    sleep 0.05
  done
  die "the simulator did not start"
}

# sim_ctl METHOD PATH [JSON]: a control request; the body on stdout, non-2xx fails.
sim_ctl() {
  local method="$1" path="$2" body="${3:-}"
  if [ -n "$body" ]; then
    curl -sS -f --max-time 120 -X "$method" -H 'Content-Type: application/json' \
      --data-binary "$body" "http://127.0.0.1:$SIM_PORT$path"
  else
    curl -sS -f --max-time 120 -X "$method" "http://127.0.0.1:$SIM_PORT$path"
  fi
}

# The churn: PER_SECOND random changes (60 % update, 20 % add, 20 % delete), at most MAX.
churn_start() {
  sim_ctl POST /control/churn "{\"per_second\":$1,\"max\":$2}" >/dev/null
  log "churn: $1 changes/s, at most $2"
}
churn_stop() {
  CHURN_STATE="$(sim_ctl POST /control/churn '{"per_second":0}')"
  log "churn stopped: $CHURN_STATE"
}

# ---- Configuration ---------------------------------------------------------------------------

# Knobs (set before write_config): how often each entity is fetched, the sources' extra YAML
# (auth, timeout, retry), the spool directory, the staging/reconciler batch sizes.
CFG_EVERY="${CFG_EVERY:-5s}"
CFG_SCHEDULE=""  # default {every: $CFG_EVERY}
CFG_TIMEOUT="${CFG_TIMEOUT:-5s}"
[ -n "${CFG_RETRY:-}" ] || CFG_RETRY="{max_attempts: 8, initial: 200ms, max: 5s}"
CFG_AUTH=""  # e.g. 'auth: {oauth2: {token_url: ..., client_id: c, client_secret: s}}'
CFG_PAGE="${CFG_PAGE:-1000}"
CFG_EXTRA=""  # top-level YAML appended as is
CFG_REST_IN_FLIGHT=1  # the REST source's requests_in_flight (pianos: page, invoices: offset)

# Two sources, so that every pagination style the chaos can break is in play: GraphQL Relay
# (clients, timeline entries), REST next-link (users), REST pages (pianos), REST offsets
# (invoices). Every field the simulator sends is a column, so "content" means all of it.
write_config() {
  local auth_block="" schedule="${CFG_SCHEDULE:-"{every: $CFG_EVERY}"}"
  [ -n "$CFG_AUTH" ] && auth_block="    $CFG_AUTH"
  cat >"$CFG" <<EOF
database: {url: "$PG_URL", retry_initial: 200ms, retry_max: 2s, connect_timeout: 5s}
spool: {dir: $SPOOL}
staging: {poll_interval: 500ms}
reconciler: {poll_interval: 500ms, retry_initial: 1s, retry_max: 10s}
monitor: {listen: "127.0.0.1:0", poll_interval: 2s}
log: {level: info}
sources:
  gql:
    base_url: http://127.0.0.1:$SIM_PORT/graphql
    rate_limit: {per_second: 0}
    timeout: $CFG_TIMEOUT
    retry: $CFG_RETRY
$auth_block
    entities:
      clients:
        graphql:
          query: "query(\$first: Int!, \$after: String, \$since: DateTime, \$until: DateTime) { allClients(first: \$first, after: \$after, filters: {updatedSince: \$since, updatedBefore: \$until}) { pageInfo { hasNextPage endCursor } edges { node { id firstName lastName email phone updatedAt } } } }"
          pagination: relay
        records: data.allClients.edges[].node
        page_size: $CFG_PAGE
        schedule: $schedule
        table:
          columns:
            first_name: {path: firstName}
            last_name:  {path: lastName}
            email:      {path: email}
            phone:      {path: phone}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      timeline_entries:
        graphql:
          query: "query(\$first: Int!, \$after: String, \$since: DateTime, \$until: DateTime) { allTimelineEntries(first: \$first, after: \$after, filters: {updatedSince: \$since, updatedBefore: \$until}) { pageInfo { hasNextPage endCursor } edges { node { id type occurredAt summary piano { id } user { id } client { id } updatedAt } } } }"
          pagination: relay
        records: data.allTimelineEntries.edges[].node
        page_size: $CFG_PAGE
        schedule: $schedule
        table:
          columns:
            kind:        {path: type}
            occurred_at: {path: occurredAt, type: timestamptz, required: true}
            summary:     {path: summary}
            piano_id:    {path: piano.id, references: pianos}
            user_id:     {path: user.id, references: users}
            client_id:   {path: client.id, references: clients}
  rest:
    base_url: http://127.0.0.1:$SIM_PORT
    rate_limit: {per_second: 0}
    requests_in_flight: $CFG_REST_IN_FLIGHT
    timeout: $CFG_TIMEOUT
    retry: $CFG_RETRY
$auth_block
    entities:
      users:
        rest: {path: /rest/users, pagination: next_link}
        page_size: $((CFG_PAGE / 2))
        schedule: $schedule
        table:
          columns:
            first_name: {path: firstName}
            last_name:  {path: lastName}
            email:      {path: email}
            role:       {path: role}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      pianos:
        rest: {path: /rest/pianos}
        page_size: $CFG_PAGE
        schedule: $schedule
        table:
          columns:
            make:          {path: make}
            model:         {path: model}
            serial_number: {path: serialNumber}
            client_id:     {path: client.id, references: clients}
          placeholder: {make: "?"}
      invoices:
        rest: {path: /rest/invoices, pagination: offset, params: {limit: limit}}
        page_size: $CFG_PAGE
        schedule: $schedule
        table:
          columns:
            number:    {path: number}
            total:     {path: total, type: numeric}
            currency:  {path: currency}
            issued_at: {path: issuedAt, type: timestamptz}
            client_id: {path: client.id, references: clients}
$CFG_EXTRA
EOF
  "$INGESTD" check-config -c "$CFG" >/dev/null || die "invalid $CFG"
  "$INGESTD" migrate -c "$CFG" >"$WORK/logs/migrate.log" 2>&1 || die "migrate failed: $(tail -5 "$WORK/logs/migrate.log")"
}

# The configured columns as "entity column path type", for the comparison.
CHAOS_COLUMNS="
clients first_name firstName text
clients last_name lastName text
clients email email text
clients phone phone text
users first_name firstName text
users last_name lastName text
users email email text
users role role text
pianos make make text
pianos model model text
pianos serial_number serialNumber text
pianos client_id client.id text
timeline_entries kind type text
timeline_entries occurred_at occurredAt timestamptz
timeline_entries summary summary text
timeline_entries piano_id piano.id text
timeline_entries user_id user.id text
timeline_entries client_id client.id text
invoices number number text
invoices total total numeric
invoices currency currency text
invoices issued_at issuedAt timestamptz
invoices client_id client.id text
"

# ---- Stages ----------------------------------------------------------------------------------

# stage_start NAME CMD [ARGS]: `ingestd CMD -c $CFG` in the background, log appended to
# $WORK/logs/NAME.log (so restarts keep one log per stage).
stage_start() {
  local name="$1"
  shift
  STAGE_CMD[$name]="$*"
  # shellcheck disable=SC2086
  "$INGESTD" "$@" -c "$CFG" >>"$WORK/logs/$name.log" 2>&1 &
  STAGE_PID[$name]=$!
}

stage_alive() { kill -0 "${STAGE_PID[$1]}" 2>/dev/null; }

# SIGKILL, reap, restart: one worker restart.
stage_kill_restart() {
  local name="$1"
  kill -KILL "${STAGE_PID[$name]}" 2>/dev/null || true
  wait "${STAGE_PID[$name]}" 2>/dev/null || true
  echo "--- chaos: SIGKILL at $(date -u +%H:%M:%S.%N), restarted" >>"$WORK/logs/$name.log"
  # shellcheck disable=SC2086
  stage_start "$name" ${STAGE_CMD[$name]}
  RESTARTS=$((RESTARTS + 1))
}

# SIGTERM and wait: a clean stop must exit 0 within 15 s, anything else is a crash.
stage_stop() {
  local name="$1" pid="${STAGE_PID[$1]}" rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    crash "$name did not stop within 15 s of SIGTERM"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" -eq 0 ] || crash "$name exited $rc after SIGTERM"
  unset "STAGE_PID[$name]"
}

crash() {
  CRASHES=$((CRASHES + 1))
  CRASH_NOTES+=("$*")
  log "CRASH: $*"
}

# A stage that is gone although nobody killed it crashed: count it and start it again, so the
# scenario still ends with a comparison.
stages_check() {
  local name rc
  for name in "${!STAGE_PID[@]}"; do
    if ! stage_alive "$name"; then
      rc=0
      wait "${STAGE_PID[$name]}" 2>/dev/null || rc=$?
      crash "$name exited on its own (status $rc): $(tail -3 "$WORK/logs/$name.log" | tr '\n' ' ')"
      # shellcheck disable=SC2086
      stage_start "$name" ${STAGE_CMD[$name]}
    fi
  done
}

# The separate long-lived stages: one fetcher, one stager, two reconcilers.
start_stages() {
  stage_start fetcher fetcher
  stage_start stager stager
  stage_start reconciler1 reconciler
  stage_start reconciler2 reconciler
}

# sleep_watch SECONDS: sleep, checking the stages every second.
sleep_watch() {
  local end=$(($(date +%s) + $1))
  while [ "$(date +%s)" -lt "$end" ]; do
    stages_check
    sleep 1
  done
}

# ---- Drain -----------------------------------------------------------------------------------

spool_incoming() {
  find "$SPOOL/incoming" -type f ! -name '.*' 2>/dev/null | wc -l
}

# Staging rows not processed yet, full runs whose deletions are not settled, and every entity
# with a full run whose deletions were applied after `since` (epoch seconds).
drain_state() {
  local since="$1" q="SELECT 0" e
  for e in "${CHAOS_ENTITIES[@]}"; do
    q="$q + (SELECT count(*) FROM stg_$e WHERE NOT processed)"
  done
  psqlq -c "SELECT ($q) || ' ' ||
      (SELECT count(*) FROM ingestd_fetch_runs WHERE mode = 'full' AND reconciled_at IS NULL) || ' ' ||
      (SELECT count(DISTINCT entity) FROM ingestd_fetch_runs WHERE mode = 'full'
         AND deletion = 'applied' AND reconciled_at >= to_timestamp($since))" 2>/dev/null
}

# checkpoint_state ENTITY SINCE: "resume" when the entity's checkpoint holds an unfinished run,
# "done" when a full run completed after SINCE (epoch seconds), else "start".
checkpoint_state() {
  python3 - "$SPOOL/state/$1.json" "$2" <<'PY'
import datetime, json, sys
# Two slots (fetcher/checkpoint.cpp): <entity>.json and <entity>.json.1; the higher seq counts
# (a slot that does not parse is one a crash cut short).
cp, seq = {}, -1
for path in (sys.argv[1], sys.argv[1] + ".1"):
    try:
        slot = json.load(open(path))
    except (FileNotFoundError, ValueError):
        continue
    if slot.get("seq", 0) > seq:
        cp, seq = slot, slot.get("seq", 0)
if cp.get("current"):
    print("resume")
elif cp.get("last_full") and datetime.datetime.fromisoformat(cp["last_full"].replace("Z", "+00:00")).timestamp() >= float(sys.argv[2]):
    print("done")
else:
    print("start")
PY
}

# final_fetch SINCE: one complete full run per entity that starts after SINCE. An attempt that
# fails (a fault storm, a full disk) is resumed with `fetch --once`, never restarted as a new
# full run (which is what another `--mode full` would do after finishing the old one).
final_fetch() {
  local since="$1" e attempt state
  for e in "${CHAOS_ENTITIES[@]}"; do
    for attempt in $(seq 1 60); do
      state="$(checkpoint_state "$e" "$since")"
      case "$state" in
        done) break ;;
        resume) "$INGESTD" fetch --once --entity "$e" -c "$CFG" >>"$WORK/logs/final_fetch.log" 2>&1 || true ;;
        start) "$INGESTD" fetch --once --entity "$e" --mode full -c "$CFG" >>"$WORK/logs/final_fetch.log" 2>&1 || true ;;
      esac
      state="$(checkpoint_state "$e" "$since")"
      [ "$state" != "done" ] || break
      [ "$attempt" -lt 60 ] || die "the final full fetch of $e did not complete in 60 attempts: $(tail -3 "$WORK/logs/final_fetch.log")"
      log "final full fetch of $e: $state, not complete yet (attempt $attempt); again in 2 s"
      sleep 2
    done
  done
}

# final_sync: stop the churn and the long-lived fetcher, fetch every entity in full once (so
# deletions apply; an unfinished run is resumed first), then wait until the spool is empty,
# every staging row processed and every entity's full run applied. DRAIN_SECONDS counts from
# the churn's stop.
final_sync() {
  local timeout="${1:-900}" t0 attempt state pending rows open applied
  churn_stop
  t0=$(date +%s)
  if [ -n "${STAGE_PID[fetcher]:-}" ]; then stage_stop fetcher; fi
  final_fetch "$t0"
  log "final full fetch done; waiting for the pipeline to drain"
  while :; do
    stages_check
    pending=$(spool_incoming)
    state="$(drain_state "$t0" || echo "x x x")"
    read -r rows open applied <<<"$state"
    if [ "$pending" = 0 ] && [ "$rows" = 0 ] && [ "$open" = 0 ] && [ "$applied" = "${#CHAOS_ENTITIES[@]}" ]; then
      break
    fi
    if [ $(($(date +%s) - t0)) -gt "$timeout" ]; then
      log "not drained after ${timeout}s: incoming=$pending unprocessed=$rows full_runs_open=$open entities_applied=$applied"
      VIOLATIONS=$((VIOLATIONS + 1))
      break
    fi
    sleep 1
  done
  DRAIN_SECONDS=$(($(date +%s) - t0))
  log "drained in ${DRAIN_SECONDS}s"
}

# ---- Comparison ------------------------------------------------------------------------------

# compare: the simulator's data set (GET /control/dump, JSON lines) into a temp table, then per
# entity, for the records that are not deliberately bad:
#   lost        upstream, but not a live real row (missing, still a placeholder, or deleted)
#   duplicated  more than one row per id, or version > 1 + the record's upstream revisions
#               (the same content applied twice after something newer)
#   stale       live row whose content differs (raw_data, updated-at or a configured column),
#               a live real row whose id is gone upstream (deletion not applied), or a
#               placeholder whose id exists upstream (never filled)
compare() {
  sim_ctl GET /control/dump >"$WORK/truth.jsonl"
  local sql="$WORK/compare.sql" e cols
  {
    cat <<'EOF'
\set ON_ERROR_STOP 1
CREATE TEMP TABLE truth_lines (line text);
\copy truth_lines (line) FROM 'TRUTH' WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02')
CREATE TEMP TABLE truth AS
  SELECT l->>'entity' AS entity, l->>'id' AS id, l->'record' AS rec, l->>'bad' AS bad,
         coalesce((l->>'revisions')::int, 0) AS revisions
  FROM (SELECT line::jsonb AS l FROM truth_lines) x;
CREATE TEMP TABLE bad_ids AS SELECT DISTINCT entity, id FROM truth WHERE bad IS NOT NULL AND id IS NOT NULL;
CREATE TEMP TABLE good AS SELECT t.* FROM truth t
  WHERE bad IS NULL AND NOT EXISTS (SELECT 1 FROM bad_ids b WHERE b.entity = t.entity AND b.id = t.id);
CREATE INDEX ON truth (entity, id);
CREATE INDEX ON good (entity, id);
ANALYZE truth;
ANALYZE good;
EOF
    for e in "${CHAOS_ENTITIES[@]}"; do
      cols=""
      while read -r ent col path type; do
        [ "$ent" = "$e" ] || continue
        local expr="(g.rec #>> '{${path//./,}}')"
        [ "$type" = text ] || expr="$expr::$type"
        cols="$cols OR p.$col IS DISTINCT FROM $expr"
      done <<<"$CHAOS_COLUMNS"
      cat <<EOF
SELECT '$e',
  (SELECT count(*) FROM good g WHERE g.entity = '$e'),
  (SELECT count(*) FROM good g LEFT JOIN $e p ON p.id = g.id
     WHERE g.entity = '$e' AND (p.id IS NULL OR p.is_placeholder OR p.deleted_at IS NOT NULL)),
  (SELECT count(*) FROM (SELECT id FROM $e GROUP BY id HAVING count(*) > 1) d)
  + (SELECT count(*) FROM good g JOIN $e p ON p.id = g.id
       WHERE g.entity = '$e' AND NOT p.is_placeholder AND p.version > 1 + g.revisions),
  (SELECT count(*) FROM good g JOIN $e p ON p.id = g.id
     WHERE g.entity = '$e' AND NOT p.is_placeholder AND p.deleted_at IS NULL
       AND (p.raw_data IS DISTINCT FROM g.rec
            OR p.source_updated_at IS DISTINCT FROM (g.rec->>'updatedAt')::timestamptz $cols)),
  (SELECT count(*) FROM $e p WHERE NOT p.is_placeholder AND p.deleted_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM truth t WHERE t.entity = '$e' AND t.id = p.id)),
  (SELECT count(*) FROM $e p JOIN good g ON g.entity = '$e' AND g.id = p.id WHERE p.is_placeholder),
  (SELECT count(*) FROM truth t WHERE t.entity = '$e' AND t.bad IS NOT NULL);
\o EXAMPLES_$e
SELECT 'lost', '$e', g.id, p.is_placeholder, p.deleted_at, p.synced_at FROM good g LEFT JOIN $e p ON p.id = g.id
  WHERE g.entity = '$e' AND (p.id IS NULL OR p.is_placeholder OR p.deleted_at IS NOT NULL) LIMIT 5;
SELECT 'stale', '$e', g.id, p.version, g.revisions, p.synced_at, left(p.raw_data::text, 300), left(g.rec::text, 300)
  FROM good g JOIN $e p ON p.id = g.id
  WHERE g.entity = '$e' AND NOT p.is_placeholder AND p.deleted_at IS NULL
    AND (p.raw_data IS DISTINCT FROM g.rec OR p.version > 1 + g.revisions) LIMIT 5;
SELECT 'not_deleted', '$e', p.id, p.synced_at FROM $e p WHERE NOT p.is_placeholder AND p.deleted_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM truth t WHERE t.entity = '$e' AND t.id = p.id) LIMIT 5;
\o
EOF
    done
  } | sed -e "s|'TRUTH'|'$WORK/truth.jsonl'|" -e "s|EXAMPLES_|$WORK/examples_|" >"$sql"
  psql "$PG_URL" -qtAX -F ' ' -f "$sql" >"$WORK/compare.out" 2>"$WORK/compare.err" ||
    die "the comparison failed: $(head -5 "$WORK/compare.err")"
  CHECKED=0 LOST=0 DUPLICATED=0 STALE=0 BAD=0
  printf '%-18s %8s %6s %6s %6s %12s %12s %5s\n' entity checked lost dup stale not_deleted unfilled_ph bad >&2
  local checked lost dup stale_content not_deleted unfilled bad
  while read -r e checked lost dup stale_content not_deleted unfilled bad; do
    [ -n "$e" ] || continue
    printf '%-18s %8s %6s %6s %6s %12s %12s %5s\n' "$e" "$checked" "$lost" "$dup" "$stale_content" "$not_deleted" "$unfilled" "$bad" >&2
    CHECKED=$((CHECKED + checked))
    LOST=$((LOST + lost))
    DUPLICATED=$((DUPLICATED + dup))
    STALE=$((STALE + stale_content + not_deleted + unfilled))
    BAD=$((BAD + bad))
  done <"$WORK/compare.out"
}

# report: one line of figures (also appended to $WORK/../chaos-results.txt for run.sh) and
# exit 1 on any lost, duplicated or stale record, a crash or another violation.
report() {
  local status=PASS
  if [ "$LOST" -gt 0 ] || [ "$DUPLICATED" -gt 0 ] || [ "$STALE" -gt 0 ] || [ "$CRASHES" -gt 0 ] ||
    [ "$VIOLATIONS" -gt 0 ]; then
    status=FAIL
  fi
  local total=$(($(date +%s) - STARTED_AT))
  # What the stages said at warning and error level, by event: the story of the run.
  log "warning and error events in the stage logs:"
  grep -ho 'level=\(warning\|error\) event=[a-z_.]*' "$WORK"/logs/*.log 2>/dev/null |
    sed 's/level=//; s/event=//' | sort | uniq -c | sort -rn | head -25 >&2 || true
  local errors
  errors=$(cat "$WORK"/logs/*.log 2>/dev/null | grep -c 'level=error' || true)
  local line
  line="$(printf 'scenario=%s status=%s checked=%s lost=%s duplicated=%s stale=%s bad_excluded=%s restarts=%s crashes=%s violations=%s drain_s=%s total_s=%s error_lines=%s %s' \
    "$CHAOS_NAME" "$status" "$CHECKED" "$LOST" "$DUPLICATED" "$STALE" "$BAD" "$RESTARTS" "$CRASHES" \
    "$VIOLATIONS" "$DRAIN_SECONDS" "$total" "$errors" "${REPORT_EXTRA:-}")"
  echo "$line"
  if [ -n "${CHAOS_RESULTS:-}" ]; then echo "$line" >>"$CHAOS_RESULTS"; fi
  local note
  for note in "${CRASH_NOTES[@]}"; do log "crash: $note"; done
  [ "$status" = PASS ]
}
