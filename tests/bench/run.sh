#!/usr/bin/env bash
# Staging benchmark (issue 2). Measures, in one run on one throwaway PostgreSQL:
#   (a) psql \copy of N records into a bare (doc jsonb) table — the physical reference
#   (b) `ingestd stage --once` loading the same N records (as spool pages) into stg_<entity>
# and prints records/s for both, the ratio b/a and the stager's peak RSS.
#   bash tests/bench/run.sh [BUILD_DIR] [N]        (N defaults to 1,000,000)
# Targets: b/a >= 0.75, peak RSS <= 150 MB. Not part of ctest (timing is not a test).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
n="${2:-${INGESTD_BENCH_RECORDS:-1000000}}"
page="${INGESTD_BENCH_PAGE:-500}"

[ -x "$build/ingestd" ] && [ -x "$build/tests/bench/bench_gen" ] \
  || { echo "build first: cmake --build $build" >&2; exit 2; }
source "$root/tests/pg.sh"
work="$(mktemp -d /tmp/ingestd-bench.XXXXXX)"
trap 'pg_stop; rm -rf "$work"' EXIT INT TERM
pg_start "$work/pg"
psql -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench" >/dev/null
url="postgresql://postgres@127.0.0.1:$PGPORT/bench"

echo "generating $n records in pages of $page ..."
"$build/tests/bench/bench_gen" "$work/spool" "$work/records.copy" "$n" "$page"
input_mb=$(du -sm "$work/spool/incoming" | cut -f1)

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/($3-$2):,.0f}')"; }

# (a) the physical reference
psql -q -v ON_ERROR_STOP=1 -d bench -c "CREATE TABLE bench_baseline (doc jsonb); CHECKPOINT"
t0=$(now)
psql -q -v ON_ERROR_STOP=1 -d bench -c "\\copy bench_baseline (doc) FROM '$work/records.copy'"
t1=$(now)

# (b) the stager
cat >"$work/ingestd.yaml" <<YAML
database: {url: "$url"}
spool: {dir: "$work/spool"}
log: {level: warn}
sources:
  bench:
    entities:
      timeline_entries: {id: id}
YAML
"$build/ingestd" migrate -c "$work/ingestd.yaml" >/dev/null
psql -q -d bench -c "CHECKPOINT"
t2=$(now)
/usr/bin/time -f "%M" -o "$work/rss" "$build/ingestd" stage --once -c "$work/ingestd.yaml"
t3=$(now)

staged=$(psql -Atq -d bench -c "SELECT count(*) FROM stg_timeline_entries")
unique=$(psql -Atq -d bench -c "SELECT count(DISTINCT doc) FROM bench_baseline")
rss_mb=$(python3 -c "print(round($(cat "$work/rss")/1024, 1))")
a=$(rate "$n" "$t0" "$t1"); b=$(rate "$n" "$t2" "$t3")
ratio=$(python3 -c "print(round(($t1-$t0)/($t3-$t2), 2))")
cat <<REPORT

staging benchmark: $n records (~$input_mb MB of spool pages of $page), $(nproc) cores
  (a) psql \\copy into (doc jsonb)     $(python3 -c "print(round($t1-$t0,2))") s   $a records/s
  (b) ingestd stage --once             $(python3 -c "print(round($t3-$t2,2))") s   $b records/s
  ratio b/a                            $ratio   (target >= 0.75)
  stager peak RSS                      $rss_mb MB  (target <= 150 MB)
  stg rows $staged, distinct records $unique  (duplicates removed: must be equal)
REPORT
[ "$staged" = "$unique" ] || { echo "MISMATCH: staged rows != distinct records" >&2; exit 1; }
