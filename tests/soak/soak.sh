#!/usr/bin/env bash
# Soak: `ingestd run` (fetcher, stager, reconciler and monitor in one process) through CYCLES
# (default 1000) consecutive sync cycles against the simulator, which keeps changing records
# between cycles. A cycle is one completed incremental fetch run of every entity (a row per
# entity in ingestd_fetch_runs), reconciled. Every 100 cycles it prints the process's RSS
# (VmRSS), its open file descriptors at rest (the fewest of 20 looks over 2 s), the staging
# backlog and the threads. It fails when RSS at the last cycle is more than 5 % above RSS at
# cycle 100, when the fds moved by more than 2, when the backlog at the last cycle is above
# 1000 rows, when no cycle completes for 120 s, or when the final comparison against the
# simulator's truth finds a lost, duplicated or stale record.
#
#   tests/soak/soak.sh BUILD_DIR [CYCLES=1000]
#
# Knobs: SOAK_SIZE (simulator --size, default 200: 1 810 records), SOAK_CHURN (changes per
# second, default 5), CHAOS_SEED. Figures: tests/chaos/README.md.
set -euo pipefail
# shellcheck source=../chaos/lib.sh
source "$(dirname "$0")/../chaos/lib.sh"
chaos_init soak "${1:-}"
CYCLES="${2:-1000}"
[ "$CYCLES" -ge 200 ] || die "CYCLES must be at least 200 (the baseline is taken at cycle 100)"
CHAOS_SIZE="${SOAK_SIZE:-200}"
SOAK_CHURN="${SOAK_CHURN:-5}"

chaos_pg_start
sim_start
CFG_PAGE=100
# Incremental runs every second; a full run a minute, so deletions apply during the soak too.
CFG_SCHEDULE="{every: 1s, full_every: 1m}"
write_config
stage_start run run
RUN_PID="${STAGE_PID[run]}"
churn_start "$SOAK_CHURN" 0

# Completed incremental runs of the entity with the fewest: the number of whole cycles.
cycles_done() {
  psqlq -c "SELECT coalesce(min(n), 0) FROM (SELECT e, (SELECT count(*) FROM ingestd_fetch_runs r
      WHERE r.entity = e AND r.mode = 'incremental') AS n
      FROM unnest(ARRAY['clients','users','pianos','timeline_entries','invoices']) e) x" 2>/dev/null || echo 0
}
backlog() {
  psqlq -c "SELECT (SELECT count(*) FROM stg_clients WHERE NOT processed) + (SELECT count(*) FROM stg_users WHERE NOT processed)
      + (SELECT count(*) FROM stg_pianos WHERE NOT processed) + (SELECT count(*) FROM stg_timeline_entries WHERE NOT processed)
      + (SELECT count(*) FROM stg_invoices WHERE NOT processed)" 2>/dev/null || echo "?"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$RUN_PID/status"; }
# Open fds at rest: the fewest of 20 looks 100 ms apart. A run in flight holds a socket, a page
# being written, a writer thread's files for a moment; a leak shows in the minimum too.
fds() {
  local n min=""
  for _ in $(seq 1 20); do
    n=$(ls "/proc/$RUN_PID/fd" | wc -l)
    if [ -z "$min" ] || [ "$n" -lt "$min" ]; then min=$n; fi
    sleep 0.1
  done
  echo "$min"
}

declare -A RSS=() FDS=() BACKLOG=()
printf '%6s %8s %10s %5s %8s %8s\n' cycle elapsed_s rss_kb fds backlog threads | tee "$WORK/soak_table.txt" >&2
next=100
t0=$(date +%s)
last_progress=$t0
last_cycles=0
while [ "$next" -le "$CYCLES" ]; do
  stages_check
  [ "$CRASHES" -eq 0 ] || break
  c=$(cycles_done)
  if [ "$c" -gt "$last_cycles" ]; then
    last_cycles=$c
    last_progress=$(date +%s)
  elif [ $(($(date +%s) - last_progress)) -gt 120 ]; then
    log "no cycle completed for 120 s (at cycle $c)"
    VIOLATIONS=$((VIOLATIONS + 1))
    break
  fi
  if [ "$c" -ge "$next" ]; then
    RSS[$next]=$(rss_kb)
    FDS[$next]=$(fds)
    threads=$(awk '/^Threads:/ {print $2}' "/proc/$RUN_PID/status")
    BACKLOG[$next]=$(backlog)
    printf '%6s %8s %10s %5s %8s %8s\n' "$next" $(($(date +%s) - t0)) "${RSS[$next]}" "${FDS[$next]}" \
      "${BACKLOG[$next]}" "$threads" | tee -a "$WORK/soak_table.txt" >&2
    next=$((next + 100))
  fi
  sleep 0.5
done
last=$((next - 100))
SOAK_SECONDS=$(($(date +%s) - t0))

# The end: no more changes, one more full run of every entity applied, then the comparison.
churn_stop
tstop=$(date +%s)
log "waiting for a full run of every entity after the churn stopped, applied"
while :; do
  stages_check
  state="$(drain_state "$tstop" || echo "x x x")"
  read -r rows open applied <<<"$state"
  [ "$rows" = 0 ] && [ "$open" = 0 ] && [ "$applied" = 5 ] && [ "$(spool_incoming)" = 0 ] && break
  if [ $(($(date +%s) - tstop)) -gt 300 ]; then
    log "not drained 300 s after the churn stopped: unprocessed=$rows full_runs_open=$open entities_applied=$applied"
    VIOLATIONS=$((VIOLATIONS + 1))
    break
  fi
  sleep 1
done
DRAIN_SECONDS=$(($(date +%s) - tstop))
compare
stage_stop run

growth="n/a"
if [ -n "${RSS[100]:-}" ] && [ -n "${RSS[$last]:-}" ] && [ "$last" -gt 100 ]; then
  growth=$(awk -v a="${RSS[100]}" -v b="${RSS[$last]}" 'BEGIN { printf "%.1f", (b - a) * 100 / a }')
  if awk -v g="$growth" 'BEGIN { exit !(g > 5) }'; then
    log "RSS grew ${growth}% from cycle 100 to cycle $last (limit 5%)"
    VIOLATIONS=$((VIOLATIONS + 1))
  fi
  fd_delta=$((FDS[$last] - FDS[100]))
  if [ "${fd_delta#-}" -gt 2 ]; then
    log "open fds moved by $fd_delta from cycle 100 to cycle $last (limit 2)"
    VIOLATIONS=$((VIOLATIONS + 1))
  fi
else
  VIOLATIONS=$((VIOLATIONS + 1))
fi
if [ -n "${BACKLOG[$last]:-}" ] && [ "${BACKLOG[$last]}" != "?" ] && [ "${BACKLOG[$last]}" -gt 1000 ]; then
  log "the staging backlog is ${BACKLOG[$last]} rows at cycle $last: the reconciler does not keep up"
  VIOLATIONS=$((VIOLATIONS + 1))
fi
[ "$last" -ge "$CYCLES" ] || {
  log "only $last of $CYCLES cycles"
  VIOLATIONS=$((VIOLATIONS + 1))
}
cat "$WORK/soak_table.txt"
REPORT_EXTRA="cycles=$last soak_s=$SOAK_SECONDS rss_growth_pct=$growth fds_100=${FDS[100]:-?} fds_last=${FDS[$last]:-?}"
report
