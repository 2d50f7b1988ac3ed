#!/usr/bin/env bash
# 0. Baseline: no chaos, only the churn. Proves the harness itself: the stages, the churn, the
# final full sync and the comparison agree when nothing goes wrong. If this fails, the other
# scenarios' figures mean nothing.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
chaos_init 00_baseline "${1:-}"

chaos_pg_start
sim_start
write_config
start_stages
churn_start $((CHAOS_CHURN_TOTAL / 60)) "$CHAOS_CHURN_TOTAL"
sleep_watch 70
final_sync
compare
figures=("$CHECKED" "$LOST" "$DUPLICATED" "$STALE")

# The comparison must see what it claims to: break five rows in known ways and expect exactly
# those counts (a placeholder whose record exists is both lost and unfilled).
log "self-test of the comparison: tampering with 5 rows"
psqlq <<'SQL'
UPDATE clients SET deleted_at = now() WHERE id = (SELECT min(id) FROM clients WHERE NOT is_placeholder AND deleted_at IS NULL);
UPDATE invoices SET total = total + 1 WHERE id = (SELECT min(id) FROM invoices WHERE NOT is_placeholder AND deleted_at IS NULL);
UPDATE pianos SET deleted_at = NULL WHERE id = (SELECT min(id) FROM pianos WHERE deleted_at IS NOT NULL);
UPDATE users SET is_placeholder = true WHERE id = (SELECT min(id) FROM users WHERE NOT is_placeholder AND deleted_at IS NULL);
UPDATE timeline_entries SET version = version + 5 WHERE id = (SELECT min(id) FROM timeline_entries WHERE NOT is_placeholder AND deleted_at IS NULL);
SQL
compare
if [ "$LOST" != 2 ] || [ "$DUPLICATED" != 1 ] || [ "$STALE" != 3 ]; then
  log "the comparison missed tampered rows: lost=$LOST (want 2) duplicated=$DUPLICATED (want 1) stale=$STALE (want 3)"
  VIOLATIONS=$((VIOLATIONS + 1))
else
  log "self-test: the comparison found all 5 tampered rows"
fi
CHECKED=${figures[0]} LOST=${figures[1]} DUPLICATED=${figures[2]} STALE=${figures[3]}
report
