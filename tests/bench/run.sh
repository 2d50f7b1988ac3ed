#!/usr/bin/env bash
# Staging benchmark (issue 2). Measures, in one run on one throwaway PostgreSQL:
#   (a) psql \copy of N records into a bare (doc jsonb) table — the physical reference
#   (b) `ingestd stage --once` loading the same N records (as spool pages) into stg_<entity>
# alternately for ROUNDS rounds (each from an empty table after a CHECKPOINT), and prints
# records/s for both (median and best), the ratio b/a of the medians, and the stager's peak
# RSS. Disk and CPU noise on a shared machine moves single runs by ±20%; medians of
# alternating rounds cancel most of it.
#   bash tests/bench/run.sh [BUILD_DIR] [N]     (N: 1,000,000; ROUNDS env: 3)
# Targets: b/a >= 0.75, peak RSS <= 150 MB. Not part of ctest (timing is not a test).
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

echo "generating $n records in pages of $page ..."
"$build/tests/bench/bench_gen" "$work/pristine" "$work/records.copy" "$n" "$page"
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
a_times=(); b_times=(); rss_max=0
for r in $(seq 1 "$rounds"); do
  q "TRUNCATE bench_baseline; CHECKPOINT"
  t0=$(now); q "\\copy bench_baseline (doc) FROM '$work/records.copy'"; t1=$(now)
  a_times+=("$(python3 -c "print($t1-$t0)")")

  q "TRUNCATE stg_timeline_entries, ingestd_spool_ledger; CHECKPOINT"
  rm -rf "$work/spool"; cp -r "$work/pristine" "$work/spool"
  t0=$(now)
  /usr/bin/time -f "%M" -o "$work/rss" "$build/ingestd" stage --once -c "$work/ingestd.yaml"
  t1=$(now)
  b_times+=("$(python3 -c "print($t1-$t0)")")
  rss=$(cat "$work/rss"); [ "$rss" -gt "$rss_max" ] && rss_max=$rss
  printf 'round %s: (a) %.2f s  (b) %.2f s\n' "$r" "${a_times[-1]}" "${b_times[-1]}"
done

staged=$(q "SELECT count(*) FROM stg_timeline_entries")
unique=$(q "SELECT count(DISTINCT doc) FROM bench_baseline")
python3 - "$n" "$input_mb" "$page" "$(nproc)" "$rss_max" "$staged" "$unique" \
  "${a_times[*]}" "${b_times[*]}" <<'PY'
import statistics, sys
n, mb, page, cores, rss, staged, unique = sys.argv[1:8]
a = [float(x) for x in sys.argv[8].split()]; b = [float(x) for x in sys.argv[9].split()]
n = int(n); ma, mb_ = statistics.median(a), statistics.median(b)
print(f"\nstaging benchmark: {n:,} records (~{mb} MB of spool pages of {page}), {cores} cores, {len(a)} rounds")
print(f"  (a) psql \\copy into (doc jsonb)   median {ma:6.2f} s  {n/ma:>9,.0f} records/s  (best {n/min(a):,.0f})")
print(f"  (b) ingestd stage --once           median {mb_:6.2f} s  {n/mb_:>9,.0f} records/s  (best {n/min(b):,.0f})")
print(f"  ratio b/a (medians)                {ma/mb_:.2f}   (target >= 0.75)")
print(f"  stager peak RSS                    {int(rss)/1024:.1f} MB  (target <= 150 MB)")
print(f"  stg rows {int(staged):,}, distinct records {int(unique):,}  (must be equal)")
PY
[ "$staged" = "$unique" ] || { echo "MISMATCH: staged rows != distinct records" >&2; exit 1; }
