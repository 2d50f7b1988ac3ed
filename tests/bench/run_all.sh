#!/usr/bin/env bash
# Runs every benchmark and writes their figures into docs/BENCHMARKS.md (issue 7):
#   stage_bench.sh      stager vs psql \copy                       (issue 2)
#   fetch_bench.sh      fetcher vs curl, simulator pinned          (issue 3)
#   reconcile_bench.sh  reconciler vs set-based SQL and naive loops (issue 4)
#   e2e_latency.sh      upstream change -> production row, `ingestd run` (issue 7)
# Each prints `RESULT key="value" ...` lines (value, its reference measured in the same run,
# the ratio, the target, met); this script adds the date and the machine's load and writes
# them into the table between `<!-- bench:begin -->` and `<!-- bench:end -->` in
# docs/BENCHMARKS.md, leaving the explanatory sections as they are. The rows of benchmarks
# not run this time (ONLY=...) stay, with their own dates. Each benchmark keeps its own checks: one that
# fails is reported in the table and makes this script exit 1 (the others still run).
#
# The machine is shared (2 cores): before each benchmark it waits until the 1-minute load
# average is below WAIT_LOAD, polling every 30 s for up to WAIT_MAX seconds, then runs anyway
# and the table shows the load it ran under.
#   bash tests/bench/run_all.sh [BUILD_DIR]
# env: ONLY ("stage fetch reconcile e2e"), WAIT_LOAD (1.0), WAIT_MAX (1200),
#      DOCS (docs/BENCHMARKS.md; empty: print the table, write nothing); the benchmarks' own
#      variables pass through (ROUNDS, INGESTD_BENCH_RECORDS; FETCH_RECORDS, PIN; ROWS,
#      NAIVE_ROWS; CHANGES, EVERY, ...); SETTLE (360, the fetch benchmark's wait before its
#      first round).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
only="${ONLY:-stage fetch reconcile e2e}"
wait_load="${WAIT_LOAD:-1.0}"
wait_max="${WAIT_MAX:-1200}"
docs="${DOCS-$root/docs/BENCHMARKS.md}"
work="$(mktemp -d /tmp/ingestd-bench-all.XXXXXX)"
trap 'rm -rf "$work"' EXIT INT TERM

declare -A script=([stage]=stage_bench.sh [fetch]=fetch_bench.sh [reconcile]=reconcile_bench.sh
                   [e2e]=e2e_latency.sh)
load1() { cut -d' ' -f1 /proc/loadavg; }
quiet_enough() { python3 -c "import sys; sys.exit(0 if $(load1) < $wait_load else 1)"; }

failed=0
for b in $only; do
  [ -n "${script[$b]:-}" ] || { echo "run_all: unknown benchmark $b (stage fetch reconcile e2e)" >&2; exit 2; }
  waited=0
  until quiet_enough || [ "$waited" -ge "$wait_max" ]; do
    [ "$waited" = 0 ] && echo "== $b: waiting for the load average ($(load1)) to fall below $wait_load ..."
    sleep 30
    waited=$((waited + 30))
  done
  start_load=$(load1)
  start=$(date -u +%Y-%m-%dT%H:%MZ)
  echo "== $b: ${script[$b]} (load $start_load, waited ${waited} s)"
  rc=0
  # fetch: SETTLE lets the disk forget what the previous benchmark or the test suite deleted
  # (fetch_bench.sh explains); 0 skips it.
  settle=0
  [ "$b" = fetch ] && settle="${SETTLE:-360}"
  SETTLE="$settle" bash "$root/tests/bench/${script[$b]}" "$build" 2>&1 | tee "$work/$b.log" || rc=$?  # pipefail: the bench's
  [ "$rc" = 0 ] || { failed=1; echo "== $b FAILED (exit $rc)" >&2; }
  echo "$b $rc $start $start_load $(load1) $waited" >>"$work/runs"
done

machine="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
machine+=", $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
machine+=", $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME" || uname -sr)"
source "$root/tests/pg.sh"
pg_version=$("$(pg_bin_dir)/postgres" --version 2>/dev/null | awk '{print $3}') || pg_version="?"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo "?")
[ -n "$(git -C "$root" status --porcelain 2>/dev/null | head -n 1)" ] && commit+=" + uncommitted changes"

python3 - "$work" "$docs" "$machine" "$pg_version" "$commit" "$wait_load" "$wait_max" <<'PY'
import json, re, sys
work, docs, machine, pg, commit, wait_load, wait_max = sys.argv[1:8]
pair = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*")')
rows = []
for line in open(f"{work}/runs"):
    bench, rc, start, load0, load1, waited = line.split()
    results = []
    for out in open(f"{work}/{bench}.log", errors="replace"):
        if out.startswith("RESULT "):
            results.append({k: json.loads(v) for k, v in pair.findall(out)})
    when = f"{start[:10]} {start[11:]}"
    load = f"{load0} → {load1}" + (f" (waited {int(waited) // 60} min)" if int(waited) else "")
    if rc != "0":
        rows.append(f"| {bench} | **FAILED (exit {rc})**: see its output | | | | | | {when} | {load} |")
    def num(v, unit):
        return f"{float(v):,.0f}" if unit.endswith("/s") and float(v) >= 1000 else v
    for r in results:
        ref = f"{r['ref_what']}: {num(r['ref'], r['unit'])} {r['unit']}" if r.get("ref") else ""
        ratio = f"{r['ratio']} ({r['ratio_what']})" if r.get("ratio") else ""
        met = {"yes": "met", "NO": "**not met**"}.get(r.get("met", ""), "")
        rows.append(f"| {r['bench']} | {r['figure']} | {num(r['value'], r['unit'])} {r['unit']} | {ref} | {ratio} "
                    f"| {r.get('target', '')} | {met} | {when} | {load} |")
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
text = open(docs).read() if docs else ""
order = ["stage", "fetch", "reconcile", "e2e"]
ran = {line.split()[0] for line in open(f"{work}/runs")}
if begin in text and end in text:  # keep the rows of benchmarks that did not run now
    old = text[text.index(begin):text.index(end)]
    rows += [l for l in old.splitlines() if l.startswith("| ") and not l.startswith("| bench ")
             and l.split("|")[1].strip() not in ran]
rows.sort(key=lambda l: order.index(l.split("|")[1].strip()) if l.split("|")[1].strip() in order else 9)
table = "\n".join([
    "<!-- bench:begin -->",
    "<!-- Written by tests/bench/run_all.sh; edit the scripts, not this table. -->",
    f"Written by `bash tests/bench/run_all.sh` ({' '.join(b for b in order if b in ran)} last run): {machine}, PostgreSQL {pg}, commit {commit}. "
    f"Every reference was measured in the same run as its figure; load is the 1-minute load "
    f"average at the start and the end of that benchmark (each waited for < {wait_load}, "
    f"at most {int(wait_max) // 60} min).",
    "",
    "| bench | figure | value | reference (same run) | ratio | target | | date (UTC) | load |",
    "|---|---|---|---|---|---|---|---|---|",
    *rows,
    "<!-- bench:end -->",
])
print("\n" + table)
if docs:
    if begin in text and end in text:
        text = text[:text.index(begin)] + table + text[text.index(end) + len(end):]
    else:  # first run: the table goes before the first section
        at = text.index("\n## ") + 1
        text = text[:at] + "## Latest figures\n\n" + table + "\n\n" + text[at:]
    open(docs, "w").write(text)
    print(f"\nwritten to {docs}")
PY
exit "$failed"
