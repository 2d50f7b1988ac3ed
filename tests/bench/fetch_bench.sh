#!/usr/bin/env bash
# Fetcher benchmark (issue 3). The upstream simulator serves N timeline entries on 127.0.0.1;
# in the same run, alternately for ROUNDS rounds, we time
#   (a) curl fetching the same pages (REST, ?_page=&_limit=500) over one keep-alive
#       connection to /dev/null: a client that does nothing with the pages, i.e. the rate at
#       which the simulator serves one client;
#   (b) `ingestd fetch --once` of that entity with no rate limit: parse, spool (fsync),
#       checkpoint;
#   (c) the same with the spool in memory (/dev/shm, where fsync costs nothing): the fetcher's
#       own work without the disk's latency. c/a near 1 and b/a below it means the disk, not
#       the fetcher's code, is what is left.
# Target (issue 3): the simulator, not the fetcher, is the bottleneck. With PIN=1 (the default
# on 2+ cores) the simulator runs one I/O thread pinned to CPU 0 and the client (curl or
# ingestd, all its threads) is pinned to CPU 1, so neither steals the other's CPU; then the
# simulator is the bottleneck when the fetcher is as fast as curl, b/a >= 0.95, and the
# simulator's CPU during (b) is as high as during (a). PIN=0 lets the scheduler place them
# (on 2 cores the fetcher's writer thread then competes with the simulator).
# Prints records/s, requests/s, b/a of the medians, each process's CPU, the fetcher's peak RSS
# (target <= 100 MB) and `RESULT ...` lines (tests/bench/run_all.sh). Fails when a round does
# not spool exactly N records.
#   bash tests/bench/fetch_bench.sh [BUILD_DIR] [N]      (N: 200,000 timeline entries)
# env: ROUNDS (3) PIN (1 on 2+ cores) PAGE (500) FETCH_RECORDS (N when not given)
#      SHM (1 when /dev/shm is writable: side (c))
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${1:-$root/build}"
n="${2:-${FETCH_RECORDS:-200000}}"
page="${PAGE:-500}"
rounds="${ROUNDS:-3}"
pin="${PIN:-$([ "$(nproc)" -ge 2 ] && echo 1 || echo 0)}"
size=$(( (n + 4) / 5 ))  # the simulator serves 5 timeline entries per unit of --size
n=$(( size * 5 ))
[ -x "$build/ingestd" ] && [ -x "$build/tests/upstream_sim/upstream_sim" ] \
  || { echo "build first: cmake --build $build --target ingestd upstream_sim" >&2; exit 2; }
work="$(mktemp -d /tmp/ingestd-fetch-bench.XXXXXX)"
shm="${SHM:-$([ -w /dev/shm ] && echo 1 || echo 0)}"
shm_dir=""
[ "$shm" = 1 ] && shm_dir="$(mktemp -d /dev/shm/ingestd-fetch-bench.XXXXXX)"
sim_pid=""
cleanup() {
  local rc=$?
  if [ -n "$sim_pid" ]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  [ -z "$shm_dir" ] || rm -rf "$shm_dir"
  exit "$rc"
}
trap cleanup EXIT INT TERM

server=() client=() threads=4
if [ "$pin" = 1 ]; then server=(taskset -c 0); client=(taskset -c 1); threads=1; fi
"${server[@]}" "$build/tests/upstream_sim/upstream_sim" --port 0 --size "$size" --threads "$threads" \
  >"$work/sim.out" 2>&1 &
sim_pid=$!
for _ in $(seq 300); do grep -q listening "$work/sim.out" && break; sleep 0.1; done
port=$(grep -o 'listening 127.0.0.1:[0-9]*' "$work/sim.out" | grep -o '[0-9]*$') \
  || { echo "the simulator did not start" >&2; cat "$work/sim.out" >&2; exit 1; }
base="http://127.0.0.1:$port"
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime, in clock ticks
now() { date +%s.%N; }

pages=$(( (n + page - 1) / page ))
for p in $(seq 1 "$pages"); do
  printf 'url = "%s"\noutput = "/dev/null"\n' "$base/rest/timeline_entries?_page=$p&_limit=$page"
done >"$work/curl.cfg"
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
sed "s|dir: \"$work/spool\"|dir: \"$shm_dir/spool\"|" "$work/ingestd.yaml" >"$work/shm.yaml"
"${client[@]}" curl -sS --config "$work/curl.cfg"  # warm-up: the simulator's first answers are slower

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$work/rounds"
for r in $(seq 1 "$rounds"); do
  c0=$(cpu_of "$sim_pid"); t0=$(now)
  /usr/bin/time -f "%U %S" -o "$work/time_a" "${client[@]}" curl -sS --config "$work/curl.cfg"
  t1=$(now); c1=$(cpu_of "$sim_pid")
  rm -rf "$work/spool"
  c2=$(cpu_of "$sim_pid"); t2=$(now)
  /usr/bin/time -f "%M %U %S" -o "$work/time_b" "${client[@]}" "$build/ingestd" fetch --once \
    -c "$work/ingestd.yaml" >/dev/null
  t3=$(now); c3=$(cpu_of "$sim_pid")
  t4=$t3; t5=$t3
  if [ -n "$shm_dir" ]; then
    rm -rf "$shm_dir/spool"
    t4=$(now)
    "${client[@]}" "$build/ingestd" fetch --once -c "$work/shm.yaml" >/dev/null
    t5=$(now)
  fi
  read -r ua sa <"$work/time_a"
  read -r rss ub sb <"$work/time_b"
  files=$(find "$work/spool/incoming/timeline_entries" -name '*_p*' | wc -l)
  for dir in "$work/spool" ${shm_dir:+"$shm_dir/spool"}; do
    spooled=$(cat "$dir/incoming/timeline_entries"/*_p* | grep -o '"id":"tme_' | wc -l)
    if [ "$spooled" != "$n" ]; then
      echo "MISMATCH: round $r spooled $spooled records in $dir, want $n" >&2
      exit 1
    fi
  done
  echo "$t0 $t1 $t2 $t3 $c0 $c1 $c2 $c3 $ua $sa $rss $ub $sb $files $t4 $t5" >>"$work/rounds"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$n" "$pages" "$page" "$(getconf CLK_TCK)" "$pin" "$load_before" "$load_after" \
  "$work/rounds" <<'PY'
import json, statistics, sys
n, pages, page, tick, pin = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
rounds = [[float(x) for x in line.split()] for line in open(sys.argv[8]) if line.strip()]
print(f"\nfetch benchmark: {n:,} records in {pages} pages of {page}, REST page pagination, 127.0.0.1, "
      + ("simulator (1 thread) pinned to CPU 0, client to CPU 1" if pin == "1" else "not pinned"))
A, B, C, SA, SB, FB, RSS = [], [], [], [], [], [], []
for i, (t0, t1, t2, t3, c0, c1, c2, c3, ua, sa, rss, ub, sb, files, t4, t5) in enumerate(rounds, 1):
    a, b, c = t1 - t0, t3 - t2, t5 - t4
    A.append(a); B.append(b); RSS.append(rss / 1024)
    if c > 0: C.append(c)
    SA.append(100 * (c1 - c0) / tick / a); SB.append(100 * (c3 - c2) / tick / b)
    FB.append(100 * (ub + sb) / b)
    print(f"  round {i}: (a) curl {a:5.2f} s, simulator CPU {SA[-1]:3.0f} %, curl CPU {100 * (ua + sa) / a:3.0f} %"
          f"   (b) ingestd {b:5.2f} s, simulator CPU {SB[-1]:3.0f} %, fetcher CPU {FB[-1]:3.0f} %"
          f"   b/a {a / b:.2f}" + (f"   (c) in memory {c:5.2f} s, c/a {a / c:.2f}" if c > 0 else "")
          + f"  ({int(files)} spool pages)")
ma, mb = statistics.median(A), statistics.median(B)
sa, sb, fb = statistics.median(SA), statistics.median(SB), statistics.median(FB)
rss = max(RSS)
print(f"  (a) curl, same pages to /dev/null   median {ma:5.2f} s  {n/ma:>9,.0f} records/s  {pages/ma:6.1f} requests/s  simulator CPU {sa:3.0f} %")
print(f"  (b) ingestd fetch --once            median {mb:5.2f} s  {n/mb:>9,.0f} records/s  {pages/mb:6.1f} requests/s  simulator CPU {sb:3.0f} %")
if C:
    mc = statistics.median(C)
    print(f"  (c) the same, spool in /dev/shm     median {mc:5.2f} s  {n/mc:>9,.0f} records/s  {pages/mc:6.1f} requests/s")
print(f"  ratio b/a (medians)                 {ma/mb:.2f}   (target >= 0.95: the simulator, not the fetcher, sets the pace)")
if C:
    print(f"  ratio c/a (medians)                 {ma/mc:.2f}   (the fetcher's own work, without the disk)")
print(f"  fetcher CPU {fb:.0f} % of one core, peak RSS {rss:.1f} MB (target <= 100 MB)")
print(f"  load average before: {sys.argv[6]}, after: {sys.argv[7]}")
def result(**f):
    print("RESULT bench=\"fetch\" " + " ".join(f"{k}={json.dumps(v)}" for k, v in f.items()))
result(figure="records/s (median)" + (", pinned" if pin == "1" else ""), value=f"{n/mb:.0f}", unit="rec/s",
       ref=f"{n/ma:.0f}", ref_what="curl, same pages to /dev/null, median", ratio=f"{ma/mb:.2f}",
       ratio_what="b/a", target=">= 0.95", met="yes" if ma / mb >= 0.95 else "NO")
if C:
    result(figure="records/s, spool in memory (diagnostic)", value=f"{n/mc:.0f}", unit="rec/s",
           ref=f"{n/ma:.0f}", ref_what="curl, same pages to /dev/null, median",
           ratio=f"{ma/mc:.2f}", ratio_what="c/a", target="", met="")
result(figure="simulator CPU during (b)", value=f"{sb:.0f}", unit="%", ref=f"{sa:.0f}",
       ref_what="simulator CPU during (a)", ratio=f"{sb/sa:.2f}", ratio_what="b/a", target="",
       met="")
result(figure="fetcher peak RSS", value=f"{rss:.1f}", unit="MB", ref="", ref_what="", ratio="",
       ratio_what="", target="<= 100 MB", met="yes" if rss <= 100 else "NO")
PY
