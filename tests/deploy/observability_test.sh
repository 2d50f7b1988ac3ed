#!/usr/bin/env bash
# Protects the Grafana dashboard and the Prometheus alert rules that deploy/ ships: every
# PromQL expression in them works against a real Prometheus scraping a real `ingestd run`,
# and the ones that describe a synced pipeline have data. A dashboard panel with a typo in a
# metric name, a label the code does not export, or a rule that no longer parses would
# otherwise show up as an empty graph or a silent alert in production.
#
#   bash tests/deploy/observability_test.sh BUILD_DIR
#
# 1. promtool: `check rules` on deploy/prometheus/ingestd-alerts.yml, `check config` on
#    deploy/prometheus/prometheus.yml, and the unit tests of every alert
#    (tests/deploy/ingestd-alerts.test.yml).
# 2. A fresh database (in $INGESTD_TEST_DATABASE_URL's server, else a throwaway cluster), the
#    upstream simulator (one 500 and one 429 queued, so the error and throttling series
#    exist), `ingestd migrate`, `ingestd run`; waits until `ingestd status` says every entity
#    is healthy (the sync went through).
# 3. Prometheus (/usr/bin/prometheus) scraping it every second with the rules loaded, then
#    tests/deploy/observability_check.py: the dashboard's structure, the rules' labels,
#    annotations and runbook anchors in docs/OPERATIONS.md, every metric name used was
#    scraped, every expression evaluates, the expected ones have data, no alert on the
#    healthy sync, and a quarantined spool file makes IngestdQuarantinedFiles fire.
# Without prometheus/promtool the test fails when $CI is set and is skipped (exit 77) otherwise.
set -euo pipefail

build="$(cd "${1:?usage: observability_test.sh BUILD_DIR}" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ingestd="$build/ingestd"
sim="$build/tests/upstream_sim/upstream_sim"
prometheus="${PROMETHEUS_BIN:-/usr/bin/prometheus}"
promtool="${PROMTOOL_BIN:-/usr/bin/promtool}"
rules="$root/deploy/prometheus/ingestd-alerts.yml"
dashboard="$root/deploy/grafana/ingestd.json"

for bin in "$prometheus" "$promtool"; do
  if [ ! -x "$bin" ]; then
    if [ -n "${CI:-}" ]; then
      echo "FAIL: $bin is missing (apt-get install prometheus)" >&2
      exit 1
    fi
    echo "skipped: $bin is missing (apt-get install prometheus)"
    exit 77
  fi
done
for bin in "$ingestd" "$sim"; do
  [ -x "$bin" ] || { echo "FAIL: $bin is missing: build the ingestd and upstream_sim targets" >&2; exit 1; }
done

work="$(mktemp -d /tmp/ingestd-observability.XXXXXX)"
sim_pid="" run_pid="" prom_pid="" admin_url="" db_name="" own_pg=0
stop_child() {  # stop_child PID: SIGTERM a child we started, then reap it
  [ -n "$1" ] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  stop_child "$prom_pid"
  stop_child "$run_pid"
  stop_child "$sim_pid"
  if [ -n "$db_name" ]; then
    psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db_name WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  [ "$own_pg" -eq 1 ] && pg_stop
  if [ "$rc" -ne 0 ]; then
    for log in run.log sim.log prometheus.log; do
      [ -s "$work/$log" ] || continue
      echo "--- last lines of $log ---" >&2
      tail -n 40 "$work/$log" >&2
    done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "FAIL: gave up waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}
log_has() { grep -q "$2" "$1" 2>/dev/null; }
alive() { kill -0 "$1" 2>/dev/null; }

start_time=$SECONDS

# 1. Static checks.
"$promtool" check rules "$rules"
(cd "$root/deploy/prometheus" && "$promtool" check config prometheus.yml)
"$promtool" test rules "$root/tests/deploy/ingestd-alerts.test.yml"

# 2. Database, simulator, ingestd.
if [ -n "${INGESTD_TEST_DATABASE_URL:-}" ]; then
  admin_url="$INGESTD_TEST_DATABASE_URL"
else
  # shellcheck source=tests/pg.sh
  source "$root/tests/pg.sh"
  pg_start "$work/pg"
  own_pg=1
  admin_url="$PG_URL"
fi
db_name="ingestd_obs_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
psql -q -v ON_ERROR_STOP=1 "$admin_url" -c "CREATE DATABASE $db_name" >/dev/null
db_url="${admin_url%/*}/$db_name"  # a URI ending in /<database>, as tests/support expects

"$sim" --port 0 --size 40 --fault 500:1 --fault 429:1:1 >"$work/sim.log" 2>&1 &
sim_pid=$!
wait_for 20 "the simulator to listen" log_has "$work/sim.log" "listening 127.0.0.1:"
sim_port="$(sed -n 's/.*listening 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/sim.log" | head -n 1)"

# The e2e tests' entities (pianos reference clients; timeline entries reference pianos, ~2 %
# of them a piano that exists nowhere: open placeholders), plus invoices, staged only. Every
# 5 s a new incremental run, so the rate and run-duration panels have something to show.
spool="$work/spool"
cat >"$work/ingestd.yaml" <<EOF
database: {url: "$db_url", retry_initial: 100ms, retry_max: 1s}
spool: {dir: $spool}
staging: {poll_interval: 200ms}
reconciler: {poll_interval: 200ms}
log: {level: info}
monitor: {listen: "127.0.0.1:0", poll_interval: 200ms}
sources:
  sim:
    base_url: http://127.0.0.1:$sim_port
    rate_limit: {per_second: 0}
    entities:
      clients:
        rest: {path: /rest/clients}
        page_size: 17
        schedule: {every: 5s}
        table:
          columns:
            first_name: {path: firstName}
            last_name:  {path: lastName}
          placeholder: {first_name: Unknown, last_name: "({id})"}
      users:
        rest: {path: /rest/users, pagination: next_link}
        page_size: 5
        schedule: {every: 5s}
        table:
          columns:
            first_name: {path: firstName}
      pianos:
        rest: {path: /rest/pianos}
        page_size: 25
        schedule: {every: 5s}
        table:
          columns:
            make:      {path: make}
            client_id: {path: client.id, references: clients}
          placeholder: {make: "?"}
      timeline_entries:
        rest: {path: /rest/timeline_entries, pagination: offset, params: {limit: limit}}
        page_size: 30
        schedule: {every: 5s}
        table:
          columns:
            kind:      {path: type}
            piano_id:  {path: piano.id, references: pianos}
            user_id:   {path: user.id, references: users}
            client_id: {path: client.id, references: clients}
      invoices:
        rest: {path: /rest/invoices}
        page_size: 20
        schedule: {every: 5s}
EOF
"$ingestd" migrate -c "$work/ingestd.yaml" >"$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; exit 1; }

"$ingestd" run -c "$work/ingestd.yaml" >"$work/run.log" 2>&1 &
run_pid=$!
wait_for 20 "ingestd run's monitor to listen" log_has "$work/run.log" "event=monitor.listening"
monitor_port="$(sed -n 's/.*event=monitor\.listening.* port=\([0-9]*\).*/\1/p' "$work/run.log" | head -n 1)"

# The sync is through when `ingestd status` calls every entity healthy (an entity never
# synced, or with anything waiting or failed, is not).
synced() { alive "$run_pid" && "$ingestd" status -c "$work/ingestd.yaml" >"$work/status.txt" 2>&1; }
wait_for 120 "every entity healthy in ingestd status" synced || { cat "$work/status.txt" >&2; exit 1; }

# 3. Prometheus: one job, scraped every second, the rules evaluated every second. A port taken
# between free_port and Prometheus's bind makes it exit: try another.
cat >"$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: ['$rules']
scrape_configs:
  - job_name: ingestd
    static_configs:
      - targets: ['127.0.0.1:$monitor_port']
EOF
prom_url=""
prom_ready() {  # ready, or exited (then the loop tries another port)
  ! alive "$prom_pid" || python3 -c 'import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/-/ready", timeout=2)' "$1" 2>/dev/null
}
for _ in 1 2 3; do
  web="127.0.0.1:$(free_port)"
  "$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
    --web.listen-address="$web" --log.level=warn >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  wait_for 30 "Prometheus to be ready" prom_ready "http://$web"
  if alive "$prom_pid"; then
    prom_url="http://$web"
    break
  fi
  wait "$prom_pid" || true
  prom_pid=""
done
[ -n "$prom_url" ] || { echo "FAIL: Prometheus did not start" >&2; exit 1; }

python3 "$root/tests/deploy/observability_check.py" "$prom_url" "$dashboard" "$rules" \
  "$root/docs/OPERATIONS.md" "$spool"

# Everything stops cleanly: ingestd run exits 0 on SIGTERM.
stop_child "$prom_pid"
prom_pid=""
kill -TERM "$run_pid"
run_rc=0
wait "$run_pid" || run_rc=$?
run_pid=""
[ "$run_rc" -eq 0 ] || { echo "FAIL: ingestd run exited $run_rc on SIGTERM" >&2; exit 1; }
echo "observability: passed in $((SECONDS - start_time)) s"
