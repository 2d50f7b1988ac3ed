#!/usr/bin/env bash
# Runs the chaos scenarios one after the other and prints a summary table; exits 1 when any
# scenario failed. Each scenario also runs alone: tests/chaos/NN_name.sh BUILD_DIR.
#
#   tests/chaos/run.sh BUILD_DIR [scenario...]     e.g. run.sh build 01 03_fault_storm
#
# A scenario is named by its file (with or without .sh) or its number. Without any, all run,
# 00_baseline first (it checks the harness itself). Logs: /tmp/chaos-run-<pid>/<scenario>.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:?usage: $0 BUILD_DIR [scenario...]}"
shift
out="/tmp/chaos-run-$$"
mkdir -p "$out"
export CHAOS_RESULTS="$out/results.txt"
: >"$CHAOS_RESULTS"

scenarios=()
if [ $# -eq 0 ]; then
  for f in "$here"/[0-9][0-9]_*.sh; do scenarios+=("$(basename "$f" .sh)"); done
else
  for want in "$@"; do
    want="${want%.sh}"
    match=("$here/$want"*.sh)
    [ -e "${match[0]}" ] || { echo "run.sh: no scenario $want" >&2; exit 2; }
    scenarios+=("$(basename "${match[0]}" .sh)")
  done
fi

failed=0
for s in "${scenarios[@]}"; do
  echo "=== $s (log: $out/$s.log)" >&2
  start=$(date +%s)
  if bash "$here/$s.sh" "$build" >"$out/$s.log" 2>&1; then
    echo "    passed in $(($(date +%s) - start)) s" >&2
  else
    echo "    FAILED in $(($(date +%s) - start)) s; last lines:" >&2
    tail -15 "$out/$s.log" | sed 's/^/    /' >&2
    failed=1
    grep -q "scenario=$s " "$CHAOS_RESULTS" || echo "scenario=$s status=FAIL" >>"$CHAOS_RESULTS"
  fi
done

# The table: one row per scenario from the key=value line each one printed.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
printf '\n%-18s %-7s %8s %5s %5s %6s %5s %9s %8s %8s %8s\n' scenario status checked lost dup stale bad restarts crashes drain_s total_s
while read -r line; do
  printf '%-18s %-7s %8s %5s %5s %6s %5s %9s %8s %8s %8s\n' "$(field "$line" scenario)" "$(field "$line" status)" \
    "$(field "$line" checked)" "$(field "$line" lost)" "$(field "$line" duplicated)" "$(field "$line" stale)" \
    "$(field "$line" bad_excluded)" "$(field "$line" restarts)" "$(field "$line" crashes)" \
    "$(field "$line" drain_s)" "$(field "$line" total_s)"
done <"$CHAOS_RESULTS"
echo
echo "details: $CHAOS_RESULTS"
exit "$failed"
