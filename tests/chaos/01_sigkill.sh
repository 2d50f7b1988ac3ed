#!/usr/bin/env bash
# 1. SIGKILL: the fetcher, the stager and two reconcilers run as separate processes; 50 times,
# at a random moment (0.5-5 s apart), one of them chosen at random is SIGKILLed and started
# again, while the upstream keeps changing and every entity also gets a full run a minute.
# Proves that a crash at any point loses, duplicates or leaves stale nothing: the checkpoint
# names only durable pages, the stager's ledger takes each file exactly once, a reconciler
# batch and a full run's deletions are one transaction each.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init 01_sigkill "${1:-}"
KILLS="${CHAOS_KILLS:-50}"

chaos_pg_start
sim_start
# A full run per entity every minute as well, so kills also land in full runs and in the
# reconciler's deletions (finalize_full_runs).
CFG_SCHEDULE="{every: 5s, full_every: 1m}"
CFG_REST_IN_FLIGHT=3  # kills also land while pages are asked three at a time
write_config
start_stages
churn_start $((CHAOS_CHURN_TOTAL / 140)) "$CHAOS_CHURN_TOTAL"
names=(fetcher stager reconciler1 reconciler2)
declare -A killed=()
for _ in $(seq 1 "$KILLS"); do
  ms=$((500 + RANDOM % 4500))
  sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
  stages_check
  victim="${names[RANDOM % ${#names[@]}]}"
  stage_kill_restart "$victim"
  killed[$victim]=$((${killed[$victim]:-0} + 1))
done
log "kills: $(for n in "${names[@]}"; do printf '%s=%s ' "$n" "${killed[$n]:-0}"; done)"
full_runs=$(psqlq -c "SELECT count(*) FILTER (WHERE deletion = 'applied') || ' of ' || count(*) FROM ingestd_fetch_runs WHERE mode = 'full'")
log "full runs during the kills: $full_runs with their deletions applied"
REPORT_EXTRA="kills=$(for n in "${names[@]}"; do printf '%s:%s,' "$n" "${killed[$n]:-0}"; done) full_runs_applied=${full_runs// /_}"
final_sync
compare
report
