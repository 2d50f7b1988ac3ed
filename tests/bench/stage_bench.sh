#!/usr/bin/env bash
# Staging benchmark (issue 2). Measures, in one run on one throwaway PostgreSQL:
#   (a) psql \copy of N records into a bare (doc jsonb) table — the physical reference
#   (b) `ingestd stage --once` loading the same N records (as spool pages of an incremental
#       run, the routine page) into stg_<entity>
#   (b') the same as pages of a full run, for which the stager also records every id
#       (ingestd_full_run_ids, read by the reconciler's deletions); FULL=0 skips it
# alternately for ROUNDS rounds (each from an empty table after a CHECKPOINT), and prints
# records/s for both (median and best), the ratio b/a of the medians, and the stager's peak
# RSS, and `RESULT ...` lines (tests/bench/run_all.sh collects them). Disk and CPU noise on a
# shared machine moves single runs by ±20%; medians of alternating rounds cancel most of it.
#   bash tests/bench/stage_bench.sh [BUILD_DIR] [N]     (N: 1,000,000; ROUNDS env: 3)
# env: ROUNDS (3) FULL (1) INGESTD_BENCH_RECORDS (N) INGESTD_BENCH_PAGE (500)
#      INGESTD_BENCH_FPT (files per transaction, 16) INGESTD_BENCH_WORKERS (2)
# Targets: b/a >= 0.75, peak RSS <= 150 MB. Not part of ctest (timing is not a test). Fails
# when the staged rows differ from the distinct records.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
n="${2:-${INGESTD_BENCH_RECORDS:-1000000}}"
page="${INGESTD_BENCH_PAGE:-500}"
rounds="${ROUNDS:-3}"

[ -x "$build/ingestd" ] && [ -x "$build/tests/bench/bench_gen" ] \
  || { echo "build first: cmake --build $build" >&2; exit 2; }
source "$root/tests/pg.sh"
work="$(mktemp -d /tmp/ingestd-bench.XXXXXX)"
trap 'pg_stop; rm -rf "$work"' EXIT INT TERM
pg_start "$work/pg"
psql -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench" >/dev/null
url="postgresql://postgres@127.0.0.1:$PGPORT/bench"
q() { psql -Atq -v ON_ERROR_STOP=1 -d bench -c "$1"; }

full="${FULL:-1}"
echo "generating $n records in pages of $page ..."
"$build/tests/bench/bench_gen" "$work/pristine" "$work/records.copy" "$n" "$page" 42 incremental
[ "$full" = 1 ] && "$build/tests/bench/bench_gen" "$work/pristine_full" /dev/null \
  "$n" "$page" 42 full >/dev/null
input_mb=$(du -sm "$work/pristine/incoming" | cut -f1)
cat >"$work/ingestd.yaml" <<YAML
database: {url: "$url"}
spool: {dir: "$work/spool"}
log: {level: warn}
staging: {files_per_transaction: ${INGESTD_BENCH_FPT:-16}, workers: ${INGESTD_BENCH_WORKERS:-2}}
sources:
  bench:
    base_url: http://127.0.0.1:9   # never called: the spool is pre-filled
    entities:
      timeline_entries: {id: id, rest: {path: /timeline_entries}}
YAML
"$build/ingestd" migrate -c "$work/ingestd.yaml" >/dev/null
q "CREATE TABLE bench_baseline (doc jsonb)"

now() { date +%s.%N; }
a_times=(); b_times=(); f_times=(); rss_max=0
stage() {  # PRISTINE_DIR: seconds into $work/t, stager peak RSS into rss_max
  q "TRUNCATE stg_timeline_entries, ingestd_spool_ledger, ingestd_full_run_ids; CHECKPOINT"
  rm -rf "$work/spool"; cp -r "$1" "$work/spool"
  local t0 t1 rss
  t0=$(now)
  /usr/bin/time -f "%M" -o "$work/rss" "$build/ingestd" stage --once -c "$work/ingestd.yaml" >&2
  t1=$(now)
  rss=$(cat "$work/rss"); [ "$rss" -gt "$rss_max" ] && rss_max=$rss
  python3 -c "print($t1-$t0)" >"$work/t"
}
for r in $(seq 1 "$rounds"); do
  q "TRUNCATE bench_baseline; CHECKPOINT"
  t0=$(now); q "\\copy bench_baseline (doc) FROM '$work/records.copy'"; t1=$(now)
  a_times+=("$(python3 -c "print($t1-$t0)")")

  if [ "$full" = 1 ]; then
    stage "$work/pristine_full"
    f_times+=("$(cat "$work/t")")
    full_ids=$(q "SELECT count(*) FROM ingestd_full_run_ids")
    [ "$full_ids" = "$n" ] || { echo "MISMATCH: $full_ids full-run ids, want $n" >&2; exit 1; }
  fi
  stage "$work/pristine"  # last: its staging rows are checked below
  b_times+=("$(cat "$work/t")")
  printf 'round %s: (a) %.2f s  (b) %.2f s%s\n' "$r" "${a_times[-1]}" "${b_times[-1]}" \
    "$([ "$full" = 1 ] && printf "  (b') %.2f s" "${f_times[-1]}")"
done

staged=$(q "SELECT count(*) FROM stg_timeline_entries")
unique=$(q "SELECT count(DISTINCT doc) FROM bench_baseline")
python3 - "$n" "$input_mb" "$page" "$(nproc)" "$rss_max" "$staged" "$unique" \
  "${a_times[*]}" "${b_times[*]}" "${f_times[*]:-}" <<'PY'
import json, statistics, sys
n, mb, page, cores, rss, staged, unique = sys.argv[1:8]
a = [float(x) for x in sys.argv[8].split()]; b = [float(x) for x in sys.argv[9].split()]
f = [float(x) for x in sys.argv[10].split()]
n = int(n); ma, mb_ = statistics.median(a), statistics.median(b)
print(f"\nstaging benchmark: {n:,} records (~{mb} MB of spool pages of {page}), {cores} cores, {len(a)} rounds")
print(f"  (a) psql \\copy into (doc jsonb)   median {ma:6.2f} s  {n/ma:>9,.0f} records/s  (best {n/min(a):,.0f})")
print(f"  (b) ingestd stage --once           median {mb_:6.2f} s  {n/mb_:>9,.0f} records/s  (best {n/min(b):,.0f})")
if f:
    mf = statistics.median(f)
    print(f"  (b') the same, full-run pages      median {mf:6.2f} s  {n/mf:>9,.0f} records/s  (best {n/min(f):,.0f})")
print(f"  ratio b/a (medians)                {ma/mb_:.2f}   (target >= 0.75)")
if f:
    print(f"  ratio b'/a (medians)               {ma/mf:.2f}")
print(f"  stager peak RSS                    {int(rss)/1024:.1f} MB  (target <= 150 MB)")
print(f"  stg rows {int(staged):,}, distinct records {int(unique):,}  (must be equal)")
def result(**f):
    print("RESULT bench=\"stage\" " + " ".join(f'{k}={json.dumps(v)}' for k, v in f.items()))
result(figure="records/s, incremental pages (median)", value=f"{n/mb_:.0f}", unit="rec/s", ref=f"{n/ma:.0f}",
       ref_what="psql \\copy into (doc jsonb), median", ratio=f"{ma/mb_:.2f}", ratio_what="b/a",
       target=">= 0.75", met="yes" if ma / mb_ >= 0.75 else "NO")
if f:
    result(figure="records/s, full-run pages (median)", value=f"{n/mf:.0f}", unit="rec/s",
           ref=f"{n/ma:.0f}", ref_what="psql \\copy into (doc jsonb), median",
           ratio=f"{ma/mf:.2f}", ratio_what="b'/a", target="", met="")
result(figure="stager peak RSS", value=f"{int(rss)/1024:.1f}", unit="MB", ref="", ref_what="",
       ratio="", ratio_what="", target="<= 150 MB", met="yes" if int(rss) / 1024 <= 150 else "NO")
PY
[ "$staged" = "$unique" ] || { echo "MISMATCH: staged rows != distinct records" >&2; exit 1; }
