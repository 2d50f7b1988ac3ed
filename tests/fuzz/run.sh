#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for SECONDS on a copy of
# its seed corpus (tests/fuzz/corpus/<target>/ is never grown by a run). Prints per target the
# executions, exec/s, coverage and any crash, leak, timeout or OOM input, which it keeps under
# BUILD_DIR/fuzz-artifacts/<target>/. Exits 1 when any target found one. docs/FUZZING.md.
#
#   bash tests/fuzz/run.sh SECONDS [BUILD_DIR]      (BUILD_DIR defaults to build-fuzz/)
#   FUZZ_TARGETS="fuzz_spool fuzz_config" bash tests/fuzz/run.sh 60 /tmp/build-fuzz
set -euo pipefail

usage() {
  echo "usage: $0 SECONDS [BUILD_DIR]   (env: FUZZ_TARGETS, FUZZ_BUILD_JOBS)" >&2
  exit 2
}
[ $# -ge 1 ] && [ $# -le 2 ] || usage
seconds=$1
[[ $seconds =~ ^[1-9][0-9]*$ ]] || usage
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${2:-$root/build-fuzz}
targets=${FUZZ_TARGETS:-fuzz_spool fuzz_config fuzz_relay fuzz_page_number fuzz_rest_page fuzz_rest_offset}

clangxx=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$clangxx" ]; then
  echo "run.sh: clang++ not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 2
fi

# Build: only the libraries the targets link (ingestd_core, ingestd_fetcher) and the targets.
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -O1 with line tables: what libFuzzer recommends for speed, and cheaper to compile than -O2 -g.
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$clangxx" \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
  -DINGESTD_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$build" -j"${FUZZ_BUILD_JOBS:-$(nproc)}" --target fuzz_targets >/dev/null

# Symbolized stack traces when the fuzzer crashes.
for s in llvm-symbolizer /usr/lib/llvm-14/bin/llvm-symbolizer; do
  if command -v "$s" >/dev/null; then
    export ASAN_SYMBOLIZER_PATH=$(command -v "$s")
    break
  fi
done
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

work=$(mktemp -d /tmp/ingestd-fuzz-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
export INGESTD_FUZZ_TMP=$work  # fuzz_* targets write their spool pages here

# One target: its summary line in $work/<t>/line, and $work/<t>/failed when it found something.
run_one() {
  local t=$1
  local bin=$build/tests/fuzz/$t
  local corpus=$work/$t/corpus artifacts=$work/$t/artifacts log=$work/$t/log
  mkdir -p "$corpus" "$artifacts"
  cp -R "$root/tests/fuzz/corpus/$t/." "$corpus/"
  local dict=(-dict="$root/tests/fuzz/dict/json.dict")
  [ "$t" = fuzz_config ] && dict=(-dict="$root/tests/fuzz/dict/config.dict")
  rm -rf "$build/fuzz-artifacts/$t"  # what an earlier run found
  local rc=0
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb: a runaway allocation is an OOM.
  "$bin" "$corpus" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" </dev/null >"$log" 2>&1 ||
    rc=$?
  local execs speed cov found line
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)
  found=$(find "$artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | sort)
  line="$t: executions=${execs:-?} exec/s=${speed:-?} ${cov:-cov: ?}"
  if [ -n "$found" ] || [ "$rc" -ne 0 ]; then
    touch "$work/$t/failed"
    local keep=$build/fuzz-artifacts/$t
    mkdir -p "$keep"
    cp "$log" "$keep/log"
    line="$line FAILED (exit $rc)"
    {
      grep -E 'ERROR:|runtime error:|contract violated|SUMMARY' "$log" | head -5 | sed 's/^/    /'
      echo "    full log: $keep/log"
    } >"$work/$t/details"
    for f in $found; do
      cp "$f" "$keep/"
      line="$line; reproduce: $bin $keep/$(basename "$f")"
    done
  fi
  echo "$line" >"$work/$t/line"
}

# FUZZ_JOBS targets at a time (default: one per core); each target is one process.
jobs_max=${FUZZ_JOBS:-$(nproc)}
for t in $targets; do
  [ -x "$build/tests/fuzz/$t" ] || { echo "run.sh: no target $t in $build" >&2; exit 2; }
done
for t in $targets; do
  echo "== $t: ${seconds}s"
  run_one "$t" &
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
done
wait

failed=0
summary=()
for t in $targets; do
  [ -f "$work/$t/details" ] && cat "$work/$t/details"
  [ -f "$work/$t/failed" ] && failed=1
  summary+=("$(cat "$work/$t/line")")
done

echo
echo "== fuzz summary (${seconds}s per target)"
printf '  %s\n' "${summary[@]}"
exit $failed
