#!/usr/bin/env bash
# The end-to-end demo. On a fresh Debian machine, as root or with sudo, from anywhere:
#   bash deploy/demo.sh           install what is missing (deploy/install-deps.sh), build
#                                 build/ (Release), then run the whole pipeline against the
#                                 upstream simulator and a throwaway PostgreSQL; Ctrl-C stops it
#   bash deploy/demo.sh --exit    the same, but exit once the final status is printed
#                                 (also DEMO_EXIT=1)
#   bash deploy/demo.sh --no-build  skip install-deps and the build; use the binaries already
#                                 in the build directory (also DEMO_NO_BUILD=1)
# Environment: INGESTD_BUILD_DIR (default <repo>/build), DEMO_SIZE (simulator size, default
# 800: ~7 200 records), DEMO_KEEP=1 keeps the temporary directory (logs, spool, config).
#
# What it shows: ingestd migrate, then `ingestd run` mirroring every entity into PostgreSQL
# (with placeholders for references that arrive late or never), then a few records changed
# upstream arriving within seconds, then `ingestd status`, /metrics and /health.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${INGESTD_BUILD_DIR:-$root/build}"
size="${DEMO_SIZE:-800}"
exit_after=0
[ "${DEMO_EXIT:-0}" = 1 ] && exit_after=1
no_build=0
[ "${DEMO_NO_BUILD:-0}" = 1 ] && no_build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --exit) exit_after=1 ;;
    --no-build) no_build=1 ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "demo.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

entities=(users clients pianos timeline_entries invoices)
step_name="start"
work=""
run_pid=""
sim_pid=""
t_start=$SECONDS

say() { printf '\n==> %s\n' "$*"; }
step() { step_name="$1"; say "$1"; }

# Which step failed, and the last lines of the logs that can say why.
fail() {
  echo >&2
  echo "demo.sh: FAILED during \"$step_name\": $*" >&2
  if [ -n "$work" ]; then
    local f
    for f in "$work/ingestd.log" "$work/sim.log" "$work/pg/server.log"; do
      [ -s "$f" ] || continue
      echo "--- last lines of $f ---" >&2
      tail -n 20 "$f" >&2 || true
    done
  fi
  exit 1
}

stop_child() {  # stop_child PID NAME: SIGTERM, wait up to 10 s, then SIGKILL
  local pid="$1" name="$2"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "demo.sh: $name did not stop within 10 s, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ -n "$work" ]; then
    echo
    echo "demo.sh: stopping ingestd, the simulator and PostgreSQL"
    stop_child "$run_pid" "ingestd run"
    stop_child "$sim_pid" "upstream_sim"
    pg_stop 2>/dev/null || true
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
      echo "demo.sh: kept $work"
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM HUP  # Ctrl-C is how the demo ends: a clean stop, exit 0

# ---------------------------------------------------------------- install and build
if [ "$no_build" -eq 0 ]; then
  step "installing missing Debian packages (deploy/install-deps.sh)"
  bash "$root/deploy/install-deps.sh" || fail "deploy/install-deps.sh failed"
  step "building ingestd and the upstream simulator in $build (Release)"
  t_build=$SECONDS
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DINGESTD_WERROR=ON >/dev/null \
    || fail "cmake configure failed"
  cmake --build "$build" -j"$(nproc)" --target ingestd upstream_sim || fail "the build failed"
  echo "built in $((SECONDS - t_build)) s"
fi
ingestd="$build/ingestd"
sim="$build/tests/upstream_sim/upstream_sim"
[ -x "$ingestd" ] && [ -x "$sim" ] || fail "no $ingestd or $sim (build first, or set INGESTD_BUILD_DIR)"
t_demo=$SECONDS

# ---------------------------------------------------------------- PostgreSQL and upstream
step "starting a throwaway PostgreSQL"
# shellcheck source=tests/pg.sh
source "$root/tests/pg.sh"
work="$(mktemp -d /tmp/ingestd-demo.XXXXXX)"
pg_start "$work/pg" || fail "PostgreSQL did not start"
psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -P pager=off)
"${psql[@]}" -d "$PG_URL" -c "CREATE DATABASE mirror" || fail "CREATE DATABASE failed"
db_url="postgresql://postgres@127.0.0.1:$PGPORT/mirror"
sql() { "${psql[@]}" -d "$db_url" -At -F ' ' -c "$1"; }
echo "PostgreSQL 127.0.0.1:$PGPORT, database mirror"

step "starting the upstream simulator (--size $size, bearer token auth)"
token="demo-$RANDOM$RANDOM"
(umask 077 && printf '%s\n' "$token" >"$work/upstream_token")
"$sim" --port 0 --size "$size" --auth "bearer:$token" >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 1 100); do
  grep -q '^listening 127.0.0.1:' "$work/sim.log" 2>/dev/null && break
  kill -0 "$sim_pid" 2>/dev/null || fail "upstream_sim exited"
  sleep 0.1
done
sim_port="$(sed -n 's/^listening 127.0.0.1:\([0-9]*\).*/\1/p' "$work/sim.log")"
[ -n "$sim_port" ] || fail "upstream_sim printed no port"
upstream="http://127.0.0.1:$sim_port"

# GET or POST (with a JSON body) to the simulator's control API; prints the answer.
control() {
  python3 - "$upstream$1" "${2:-}" <<'PY'
import sys, urllib.request
url, body = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=10).read().decode())
PY
}
# Reads JSON on stdin, prints the Python expression $1 evaluated on it as `j`.
json() { python3 -c "import json,sys; j=json.load(sys.stdin); print($1)"; }

stats="$(control /control/stats)" || fail "the simulator's /control/stats did not answer"
declare -A upstream_count
for e in "${entities[@]}"; do
  upstream_count[$e]="$(json "j['records']['$e']" <<<"$stats")"
done
total=0
for e in "${entities[@]}"; do total=$((total + upstream_count[$e])); done
echo "upstream $upstream: $total records ($(for e in "${entities[@]}"; do printf '%s %s, ' "$e" "${upstream_count[$e]}"; done | sed 's/, $//'))"

# ---------------------------------------------------------------- configure and migrate
step "writing the demo configuration (deploy/demo.yaml) and running ingestd migrate"
monitor_port="$(pg_free_port)"
cfg="$work/ingestd.yaml"
sed -e "s|\${DEMO_DATABASE_URL}|$db_url|g" -e "s|\${DEMO_DIR}|$work|g" \
    -e "s|\${DEMO_UPSTREAM_URL}|$upstream|g" -e "s|\${DEMO_MONITOR_LISTEN}|127.0.0.1:$monitor_port|g" \
    "$root/deploy/demo.yaml" >"$cfg"
"$ingestd" check-config -c "$cfg" >"$work/check-config.txt" 2>&1 \
  || { cat "$work/check-config.txt" >&2; fail "check-config refused $cfg"; }
"$ingestd" migrate -c "$cfg" >"$work/migrate.log" 2>&1 \
  || { tail -n 20 "$work/migrate.log" >&2; fail "ingestd migrate failed"; }
echo "config $cfg; $(grep -c 'event=migrate.applied' "$work/migrate.log" || true) migrations applied;" \
  "tables: $(sql "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'stg\_%' AND tablename NOT LIKE 'ingestd\_%'")"

# ---------------------------------------------------------------- the initial sync
step "ingestd run: fetcher, stager, reconciler and monitor in one process"
"$ingestd" run -c "$cfg" >"$work/ingestd.log" 2>&1 &
run_pid=$!
echo "log: $work/ingestd.log"

# Production rows per entity (real ones and placeholders), as "entity real placeholders".
counts() {
  local q="" e
  for e in "${entities[@]}"; do
    [ -n "$q" ] && q+=" UNION ALL "
    q+="SELECT '$e', count(*) FILTER (WHERE NOT is_placeholder), count(*) FILTER (WHERE is_placeholder) FROM $e"
  done
  sql "$q"
}
interactive=0
[ -t 1 ] && interactive=1
t_sync=$SECONDS
done_sync=0
while [ $((SECONDS - t_sync)) -lt 90 ]; do
  kill -0 "$run_pid" 2>/dev/null || fail "ingestd run exited"
  line="" complete=0 placeholders=0
  while read -r e real ph; do
    line+="$e $real/${upstream_count[$e]}  "
    placeholders=$((placeholders + ph))
    [ "$real" -eq "${upstream_count[$e]}" ] && complete=$((complete + 1))
  done < <(counts || true)
  # Reconciled means: every record in production and nothing left in a spool or stg_ queue.
  snapshot="$("$ingestd" status --json -c "$cfg" 2>/dev/null || true)"  # exit 1 until healthy
  due="$(json "sum(e['due'] + e['retrying'] + e['spool_waiting'] for e in j['entities'].values())" \
         <<<"$snapshot" 2>/dev/null || echo '?')"
  line+="| placeholders $placeholders | waiting $due | $((SECONDS - t_sync)) s"
  if [ "$interactive" -eq 1 ]; then printf '\r\033[K%s' "$line"; else echo "$line"; fi
  if [ "$complete" -eq ${#entities[@]} ] && [ "$due" = 0 ]; then done_sync=1; break; fi
  sleep 1
done
echo
[ "$done_sync" -eq 1 ] || fail "not every entity was reconciled within 90 s"
echo "all $total upstream records are in production after $((SECONDS - t_sync)) s"
q=""
for e in "${entities[@]}"; do
  [ -n "$q" ] && q+=" + "
  q+="(SELECT count(*) FROM stg_$e WHERE applied_as = 'filled')"
done
filled="$(sql "SELECT $q")"
open_ph="$(sql "SELECT count(*) FROM pianos WHERE is_placeholder")"
if [ "$filled" -gt 0 ]; then
  echo "$filled records arrived after a row that references them: their placeholder rows were" \
    "filled in place (no foreign key ever failed)"
fi
echo "$open_ph placeholder pianos stay: timeline entries name pianos that exist nowhere upstream" \
  "(ingestd placeholders -c $cfg lists them)"

# ---------------------------------------------------------------- a change upstream
step "changing 3 clients upstream (the simulator's /control/mutate) and watching them arrive"
answer="$(control /control/mutate '{"entity":"clients","op":"update","count":3}')" \
  || fail "/control/mutate did not answer"
ids="$(json "','.join(\"'\" + i + \"'\" for i in j['ids'])" <<<"$answer")"
show_clients() {
  "${psql[@]}" -d "$db_url" -P footer=off \
    -c "SELECT id, phone, version, source_updated_at FROM clients WHERE id IN ($ids) ORDER BY id"
}
echo "before (changed upstream at $(date -u +%H:%M:%S)):"
show_clients
t_change=$SECONDS
arrived=0
while [ $((SECONDS - t_change)) -lt 30 ]; do
  kill -0 "$run_pid" 2>/dev/null || fail "ingestd run exited"
  [ "$(sql "SELECT count(*) FROM clients WHERE id IN ($ids) AND version > 1")" = 3 ] && { arrived=1; break; }
  sleep 0.2
done
[ "$arrived" -eq 1 ] || fail "the 3 changed clients did not arrive within 30 s"
echo "after, $((SECONDS - t_change)) s later (schedule.every is 2s; version counts the changes):"
show_clients

# ---------------------------------------------------------------- status and endpoints
step "ingestd status"
sleep 1.5  # one monitor poll after the change
"$ingestd" status -c "$cfg" || true
base="http://127.0.0.1:$monitor_port"
# The embedded monitor answers: /health's verdict and how many series /metrics carries.
monitor_check="$(python3 - "$base" <<'PY'
import json, sys, urllib.error, urllib.request
base = sys.argv[1]
try:
    health = urllib.request.urlopen(base + "/health", timeout=5)
    code, body = health.status, health.read()
except urllib.error.HTTPError as e:  # 503 while not every entity is healthy
    code, body = e.code, e.read()
metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
series = [l for l in metrics.splitlines() if l.startswith("ingestd_")]
print(f"GET /health: {code} {json.loads(body).get('status')}; GET /metrics: {len(series)} ingestd_* series")
PY
)" || fail "the monitor did not answer on $base"
cat <<EOF

$monitor_check
Metrics: $base/metrics    Health: $base/health    Ready: $base/ready
Config:  $cfg
Log:     $work/ingestd.log
Try:     $ingestd placeholders -c $cfg
         curl -s $base/metrics | grep ^ingestd_records_total
EOF
echo "demo took $((SECONDS - t_demo)) s after the build ($((SECONDS - t_start)) s in all)"

if [ "$exit_after" -eq 1 ]; then
  exit 0
fi
echo
echo "ingestd keeps running (changes upstream keep arriving every 2 s). Ctrl-C stops everything."
wait "$run_pid" || true
fail "ingestd run exited on its own"
