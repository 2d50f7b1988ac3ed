#!/usr/bin/env bash
# End-to-end latency benchmark (issue 7): how long after an upstream change does a user see it
# in the production table? `ingestd run` (fetcher, stager, reconciler, monitor in one process)
# syncs a Gazelle-like upstream (the simulator: GraphQL, Relay pages, OAuth2 client
# credentials; SIZE=500: 4,525 records of clients, pianos, users, timeline entries and
# invoices) into a throwaway PostgreSQL on 127.0.0.1, with the configuration's defaults
# everywhere (page size 100, rate limit 5/s burst 10, staging.poll_interval 2 s,
# reconciler.poll_interval 1 s) except schedule.every (see below).
#
# After the initial sync, the driver (e2e_latency.py) changes CHANGES records upstream (the
# simulator's control endpoint; entities in turn), at random moments spread uniformly over
# ceil(CHANGES/PER_PERIOD) schedule periods, so the wait for the next scheduled fetch is
# sampled uniformly. Several changes may be in flight at once; each is timed on its own:
#   latency   the change -> the commit that wrote its new version (pg_xact_commit_timestamp)
#   wait      the change -> the fetch that saw it (the row's fetched_at): the schedule's part,
#             the reference measured in the same run (latency/wait = 1 means the pipeline adds
#             nothing to what the schedule imposes)
#   pipeline  that fetch -> the commit: spool, stager, reconciler and their poll intervals
# Then, with ingestd stopped, BARE changes are copied by a bare GraphQL request and one
# autocommitted upsert: the floor of any pipeline (pipeline/bare says what the stages cost).
#
# schedule.every: EVERY (default 10s), not the configuration's 5m. With 5m, the wait alone is
# uniform over 0-5 min and 100 measured changes take hours sequentially (or ~50 min with 10 per
# period); it would only restate the schedule. The pipeline's part does not depend on it, and
# the latency with any schedule is the wait (uniform over 0..every) plus that part:
# EVERY=5m PER_PERIOD=25 measures the default as it is (~20 min).
#
# Prints p50/p99 (nearest rank) and `RESULT ...` lines (tests/bench/run_all.sh). Exits non-zero
# when a change never reaches production or ingestd fails to stop cleanly.
#   bash tests/bench/e2e_latency.sh [BUILD_DIR]
# env: CHANGES (100) EVERY (10s) PER_PERIOD (10) SIZE (500) BARE (20) SEED (7) KEEP (keep the
#      work directory)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
changes="${CHANGES:-100}"
every="${EVERY:-10s}"
per_period="${PER_PERIOD:-10}"
size="${SIZE:-500}"
bare="${BARE:-20}"
seed="${SEED:-7}"
client="bench-client:bench-s3cret"

[ -x "$build/ingestd" ] && [ -x "$build/tests/upstream_sim/upstream_sim" ] \
  || { echo "build first: cmake --build $build --target ingestd upstream_sim" >&2; exit 2; }
every_s=$(python3 -c "
import re, sys
m = re.fullmatch(r'(\d+(?:\.\d+)?)(ms|s|m|h)', '$every') or sys.exit('EVERY: e.g. 10s or 5m')
print(float(m[1]) * {'ms': 0.001, 's': 1, 'm': 60, 'h': 3600}[m[2]])")
source "$root/tests/pg.sh"
work="$(mktemp -d /tmp/ingestd-e2e-bench.XXXXXX)"
sim_pid=""
run_pid=""
cleanup() {
  local rc=$?
  if [ -n "$run_pid" ]; then kill "$run_pid" 2>/dev/null || true; wait "$run_pid" 2>/dev/null || true; fi
  if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
  pg_stop
  if [ "$rc" -ne 0 ] && [ -f "$work/run.log" ]; then
    echo "--- last lines of the ingestd run log ---" >&2
    tail -n 20 "$work/run.log" >&2 || true
  fi
  if [ -n "${KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

# PostgreSQL with commit timestamps: the exact moment each new version became visible.
pg_start "$work/pg"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "ALTER SYSTEM SET track_commit_timestamp = on"
pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 restart >/dev/null
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE e2e"
db="postgresql://postgres@127.0.0.1:$PGPORT/e2e"

"$build/tests/upstream_sim/upstream_sim" --port 0 --size "$size" --auth "oauth2:$client" \
  >"$work/sim.out" 2>&1 &
sim_pid=$!
for _ in $(seq 300); do grep -q listening "$work/sim.out" && break; sleep 0.1; done
port=$(grep -o 'listening 127.0.0.1:[0-9]*' "$work/sim.out" | grep -o '[0-9]*$') \
  || { echo "the simulator did not start" >&2; cat "$work/sim.out" >&2; exit 1; }
sim="http://127.0.0.1:$port"

relay() {  # ROOT FIELDS -> a Relay query as the fetcher sends it
  printf '"query($first: Int!, $after: String, $since: DateTime, $until: DateTime) { %s(first: $first, after: $after, filters: {updatedSince: $since, updatedBefore: $until}) { pageInfo { hasNextPage endCursor } edges { node { %s } } } }"' "$1" "$2"
}
cat >"$work/ingestd.yaml" <<YAML
# Defaults everywhere except schedule.every ($every); monitor on a free port.
database: {url: "$db"}
spool: {dir: "$work/spool"}
monitor: {listen: "127.0.0.1:0"}
sources:
  gazelle:
    base_url: $sim/graphql
    auth:
      oauth2: {token_url: $sim/oauth/token, client_id: ${client%%:*}, client_secret: ${client#*:}}
    entities:
      clients:
        graphql: {query: $(relay allClients "id firstName lastName email phone updatedAt")}
        records: data.allClients.edges[].node
        schedule: {every: $every}
        table:
          columns:
            first_name: {path: firstName}
            last_name:  {path: lastName}
            email:      {path: email}
            phone:      {path: phone}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      users:
        graphql: {query: $(relay allUsers "id firstName lastName email role updatedAt")}
        records: data.allUsers.edges[].node
        schedule: {every: $every}
        table:
          columns:
            first_name: {path: firstName}
            last_name:  {path: lastName}
            role:       {path: role}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      pianos:
        graphql: {query: $(relay allPianos "id make model serialNumber client { id } updatedAt")}
        records: data.allPianos.edges[].node
        schedule: {every: $every}
        table:
          columns:
            make:      {path: make}
            model:     {path: model}
            serial:    {path: serialNumber}
            client_id: {path: client.id, references: clients}
          placeholder: {make: "?"}
      timeline_entries:
        graphql: {query: $(relay allTimelineEntries "id type occurredAt summary piano { id } user { id } client { id } updatedAt")}
        records: data.allTimelineEntries.edges[].node
        schedule: {every: $every}
        table:
          columns:
            kind:        {path: type}
            occurred_at: {path: occurredAt, type: timestamptz, required: true}
            summary:     {path: summary}
            piano_id:    {path: piano.id, references: pianos}
            user_id:     {path: user.id, references: users}
            client_id:   {path: client.id, references: clients}
      invoices:
        graphql: {query: $(relay allInvoices "id number total currency client { id } issuedAt updatedAt")}
        records: data.allInvoices.edges[].node
        schedule: {every: $every}
        table:
          columns:
            number:    {path: number}
            total:     {path: total, type: numeric}
            client_id: {path: client.id, references: clients}
YAML
"$build/ingestd" migrate -c "$work/ingestd.yaml" >/dev/null 2>"$work/migrate.err" \
  || { cat "$work/migrate.err" >&2; exit 1; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
"$build/ingestd" run -c "$work/ingestd.yaml" >/dev/null 2>"$work/run.log" &
run_pid=$!
echo "ingestd run against $sim (size $size), schedule.every $every; $changes changes ..."
python3 "$root/tests/bench/e2e_latency.py" measure --sim "$sim" --db "$db" --every "$every_s" \
  --changes "$changes" --per-period "$per_period" --seed "$seed" --out "$work/measure.json" \
  --pid "$run_pid"
kill -TERM "$run_pid"
rc=0
wait "$run_pid" || rc=$?
run_pid=""
[ "$rc" = 0 ] || { echo "ingestd run exited $rc after SIGTERM" >&2; exit 1; }
if grep -E 'level=error' "$work/run.log" >&2; then
  echo "ingestd logged errors (above)" >&2
  exit 1
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo "bare reference: $bare changes, one GraphQL request + one upsert each (ingestd stopped) ..."
python3 "$root/tests/bench/e2e_latency.py" bare --sim "$sim" --db "$db" --changes "$bare" \
  --client "$client" --out "$work/bare.json"
python3 "$root/tests/bench/e2e_latency.py" report "$work/measure.json" "$work/bare.json"
echo "  load average before: $load_before, after: $load_after"
