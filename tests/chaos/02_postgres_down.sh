#!/usr/bin/env bash
# 2. PostgreSQL down: in the middle of the initial sync (about a quarter of the timeline
# entries in production) the server stops at once (immediate shutdown, like a crash) for 60 s,
# then starts again on the same port. Proves that the fetcher, which has no database, keeps
# spooling meanwhile; that the stager and the reconcilers wait and reconnect instead of dying;
# and that nothing in flight at the moment of the crash is lost or applied twice.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init 02_postgres_down "${1:-}"
OUTAGE="${CHAOS_OUTAGE:-60}"

chaos_pg_start
sim_start
write_config
start_stages
churn_start $((CHAOS_CHURN_TOTAL / 150)) "$CHAOS_CHURN_TOTAL"

log "waiting for the middle of the initial sync"
for _ in $(seq 1 600); do
  n=$(psqlq -c "SELECT count(*) FROM timeline_entries" 2>/dev/null || echo 0)
  [ "$n" -lt 25000 ] || break
  stages_check
  sleep 0.2
done
log "timeline_entries in production: $n; stopping PostgreSQL (immediate) for ${OUTAGE}s"
spool_before=$(spool_incoming)
chaos_pg_stop_now
t_down=$(date +%s)
sleep_watch "$OUTAGE"
spool_during=$(spool_incoming)
log "spool incoming: $spool_before files when the server stopped, $spool_during after ${OUTAGE}s"
if [ "$spool_during" -le "$spool_before" ]; then
  log "the fetcher did not keep spooling while the database was down"
  VIOLATIONS=$((VIOLATIONS + 1))
fi
chaos_pg_start_again
log "PostgreSQL is back after $(($(date +%s) - t_down))s"
t_up=$(date +%s)
# Recovery: the spool that piled up is loaded (incoming/ back to a normal level).
for _ in $(seq 1 600); do
  stages_check
  [ "$(spool_incoming)" -gt 20 ] || break
  sleep 1
done
RECOVER_SECONDS=$(($(date +%s) - t_up))
log "spool back to normal ${RECOVER_SECONDS}s after the restart"
for stage in stager reconciler1 reconciler2; do
  n=$(grep -c 'event=[a-z]*\.database_back' "$WORK/logs/$stage.log" || true)
  log "$stage: $n database_back events"
done
sleep_watch 60
REPORT_EXTRA="outage_s=$OUTAGE spool_files_before=$spool_before spool_files_after_outage=$spool_during recover_s=$RECOVER_SECONDS"
final_sync
compare
report
