#!/usr/bin/env bash
# Fetcher benchmark (issue 3). The upstream simulator serves N timeline entries on 127.0.0.1;
# in the same run we time
#   (a) curl fetching the same pages (REST, ?_page=&_limit=500) over one keep-alive
#       connection to /dev/null: what the simulator can serve, no parsing, no disk;
#   (b) `ingestd fetch --once` of that entity with no rate limit: parse, spool (fsync), checkpoint.
# and print records/s, requests/s, the ratio b/a, the fetcher's peak RSS and the CPU each
# process used (the simulator near 100 % of a core and the fetcher well below means the
# simulator is the bottleneck).
#   bash tests/bench/fetch_bench.sh [BUILD_DIR] [N]      (N: 200,000 timeline entries)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
n="${2:-200000}"
page=500
size=$(( n / 5 ))  # the simulator serves 5 timeline entries per unit of --size
work="$(mktemp -d /tmp/ingestd-fetch-bench.XXXXXX)"
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM

"$build/tests/upstream_sim/upstream_sim" --port 0 --size "$size" >"$work/sim.out" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do grep -q listening "$work/sim.out" && break; sleep 0.1; done
port=$(grep -o '[0-9]*$' "$work/sim.out" | head -n1)
base="http://127.0.0.1:$port"
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
tick=$(getconf CLK_TCK)
now() { date +%s.%N; }

pages=$(( (n + page - 1) / page ))
urls=()
for p in $(seq 1 "$pages"); do urls+=("$base/rest/timeline_entries?_page=$p&_limit=$page"); done
printf 'url = "%s"\noutput = "/dev/null"\n' "${urls[@]}" >"$work/curl.cfg"
c0=$(cpu_of "$sim_pid"); t0=$(now)
curl -sS --config "$work/curl.cfg"
t1=$(now); c1=$(cpu_of "$sim_pid")

cat >"$work/ingestd.yaml" <<YAML
database: {url: "postgresql://nobody@127.0.0.1:1/none"}
spool: {dir: "$work/spool"}
log: {level: warn}
sources:
  sim:
    base_url: $base
    rate_limit: {per_second: 0}
    entities:
      timeline_entries:
        rest: {path: /rest/timeline_entries, pagination: page}
        page_size: $page
YAML
c2=$(cpu_of "$sim_pid"); t2=$(now)
/usr/bin/time -f "%M %U %S" -o "$work/time" "$build/ingestd" fetch --once -c "$work/ingestd.yaml" >/dev/null
t3=$(now); c3=$(cpu_of "$sim_pid")
read -r rss fu fs <"$work/time"
spooled=$(find "$work/spool/incoming/timeline_entries" -name '*_p*' | wc -l)

python3 - "$n" "$pages" "$t0" "$t1" "$t2" "$t3" "$c0" "$c1" "$c2" "$c3" "$tick" "$rss" "$fu" "$fs" "$spooled" <<'PY'
import sys
n, pages = int(sys.argv[1]), int(sys.argv[2])
t0, t1, t2, t3 = map(float, sys.argv[3:7])
c0, c1, c2, c3, tick = map(float, sys.argv[7:12])
rss, fu, fs, spooled = float(sys.argv[12]), float(sys.argv[13]), float(sys.argv[14]), int(sys.argv[15])
a, b = t1 - t0, t3 - t2
print(f"\nfetch benchmark: {n:,} records in {pages} pages of 500, REST page pagination, 127.0.0.1")
print(f"  (a) curl, same pages to /dev/null   {a:6.2f} s  {n/a:>9,.0f} records/s  {pages/a:7.1f} requests/s  simulator CPU {100*(c1-c0)/tick/a:4.0f} %")
print(f"  (b) ingestd fetch --once            {b:6.2f} s  {n/b:>9,.0f} records/s  {pages/b:7.1f} requests/s  simulator CPU {100*(c3-c2)/tick/b:4.0f} %")
print(f"  ratio b/a                           {a/b:.2f}")
print(f"  fetcher CPU {100*(fu+fs)/b:.0f} % of one core, peak RSS {rss/1024:.1f} MB (target <= 100 MB)")
print(f"  spool pages written: {spooled}")
PY
