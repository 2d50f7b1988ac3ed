#!/usr/bin/env bash
# 4. Disk pressure: the spool (incoming/, archive/, and the fetcher's checkpoints in state/)
# lives on a small tmpfs. The fetcher runs alone first, so the initial sync fills the disk;
# it must pause with a clear error (ENOSPC named in fetcher.run_failed), stay alive, leave no
# half-written page, and not move its checkpoint past a page that is not on disk. Then the
# stager starts and drains incoming/ into archive/. Archived files are on the same file system
# (rename), so draining frees nothing by itself: the stager must see the disk short of
# spool.min_free (5 %) and remove archived copies itself (stager.disk_low; until 2026-11-29
# this script played the operator and deleted them), and the fetcher must resume on its own.
# Needs root (mount -t tmpfs); skipped with a message otherwise.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init 04_disk_full "${1:-}"
TMPFS_SIZE="${CHAOS_TMPFS_SIZE:-24m}"
DURATION="${CHAOS_DURATION:-150}"

mkdir -p "$SPOOL"
if ! mount -t tmpfs -o "size=$TMPFS_SIZE,mode=0755" tmpfs "$SPOOL" 2>"$WORK/mount.err"; then
  log "SKIPPED: cannot mount a tmpfs on $SPOOL ($(cat "$WORK/mount.err")); run as root"
  echo "scenario=04_disk_full status=SKIPPED reason=mount_not_permitted"
  [ -z "${CHAOS_RESULTS:-}" ] || echo "scenario=04_disk_full status=SKIPPED reason=mount_not_permitted" >>"$CHAOS_RESULTS"
  exit 0
fi
MOUNTED="$SPOOL"
log "spool on a $TMPFS_SIZE tmpfs"

chaos_pg_start
sim_start
write_config
stage_start fetcher fetcher
stage_start reconciler1 reconciler
stage_start reconciler2 reconciler
churn_start $((CHAOS_CHURN_TOTAL / DURATION)) "$CHAOS_CHURN_TOTAL"

# 1. The fetcher alone fills the disk and must say so.
log "waiting for the fetcher to hit ENOSPC"
for _ in $(seq 1 300); do
  stages_check
  grep -q 'No space left on device' "$WORK/logs/fetcher.log" && break
  sleep 1
done
grep -q 'No space left on device' "$WORK/logs/fetcher.log" || die "the disk never filled up"
log "the fetcher says: $(grep -m1 'No space left on device' "$WORK/logs/fetcher.log" | cut -c1-400)"
df -h "$SPOOL" | tail -1 >&2
# Paused, not dead, and no half-written page left behind.
sleep_watch 15
stage_alive fetcher || VIOLATIONS=$((VIOLATIONS + 1))
files_full=$(spool_incoming)
tmp_files=$(find "$SPOOL/incoming" -name '.*.tmp' | wc -l)
log "disk full: $files_full pages waiting, $tmp_files temporary files"

# 2. The stager drains and frees the archive by itself; the fetcher resumes by itself.
stage_start stager stager
mark=$(wc -l <"$WORK/logs/fetcher.log")
fills=$(grep -c 'No space left on device' "$WORK/logs/fetcher.log" || true)
sleep_watch "$DURATION"
# The long-lived fetcher got going again by itself: every entity completed runs since.
resumed=""
for e in "${CHAOS_ENTITIES[@]}"; do
  n=$(tail -n +"$((mark + 1))" "$WORK/logs/fetcher.log" | grep 'event=fetcher.run_completed' | grep -c "entity=$e " || true)
  resumed="$resumed$e:$n,"
  if [ "$n" -eq 0 ]; then
    log "the fetcher never completed a run of $e after the disk was freed"
    VIOLATIONS=$((VIOLATIONS + 1))
  fi
done
log "runs completed by the long-lived fetcher once the stager ran: $resumed"
enospc=$(grep -c 'No space left on device' "$WORK/logs/fetcher.log" || true)
final_sync 1200
pruned=$(grep -ho 'archived_files_removed=[0-9]*' "$WORK/logs/"stager*.log | cut -d= -f2 |
  awk '{s += $1} END {print s + 0}')
if [ "$pruned" -eq 0 ]; then
  log "the stager never removed an archived file although the disk was full"
  VIOLATIONS=$((VIOLATIONS + 1))
fi
log "ENOSPC lines in the fetcher's log: $enospc ($fills before the stager started), $(grep -c 'No space left on device' "$WORK/logs/final_fetch.log" || true) in the final fetch's; archived files deleted: $pruned"
tmp_left=$(find "$SPOOL" -name '.*.tmp' | wc -l)
quarantined=$(psqlq -c "SELECT count(*) FROM ingestd_quarantine")
log "after the drain: $tmp_left temporary files in the spool, $quarantined quarantined files"
if [ "$tmp_left" -gt 0 ] || [ "$quarantined" -gt 0 ]; then
  log "corruption: a temporary file or a quarantined (half-written) page"
  VIOLATIONS=$((VIOLATIONS + 1))
fi
REPORT_EXTRA="tmpfs=$TMPFS_SIZE runs_after_full=$resumed enospc_lines=$enospc archived_deleted=$pruned pages_waiting_when_full=$files_full tmp_files=$tmp_left quarantined=$quarantined"
compare
report
