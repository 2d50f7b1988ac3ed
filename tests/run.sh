#!/usr/bin/env bash
# The one test command, and exactly what CI runs (.ci/run). On a fresh Debian machine, as root
# or with sudo, from anywhere:
#   bash tests/run.sh            install deps if missing; build with ASan+UBSan and -Werror in
#                                build-sanitize/; start a throwaway PostgreSQL on 127.0.0.1; run
#                                the whole ctest suite under the sanitizers; stop it; then run
#                                every libFuzzer target for FUZZ_SECONDS (30) each
#   bash tests/run.sh --release  the same suite on an optimised build without sanitizers, in
#                                build/ (the build the demo and the benchmarks use); no fuzzing
#   bash tests/run.sh --no-fuzz  skip the fuzzing step
#   bash tests/run.sh --bench    --release, then the benchmarks (tests/bench/run_all.sh)
# Exits non-zero on any failure. Extra arguments after -- go to ctest (e.g. -- -R stager).
#
# The sanitizer build is -Og: at -O1/-O2 GCC's ASan+UBSan instrumentation doubles or triples
# the compile time of the Boost.Beast files, and the suite waits on processes and PostgreSQL
# far more than it computes. (--sanitize, the old name of the default, is still accepted.)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

release=0
fuzz=1
bench=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) ;;
    --release) release=1; fuzz=0 ;;
    --no-fuzz) fuzz=0 ;;
    --bench) bench=1; release=1; fuzz=0 ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "tests/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

started=$SECONDS
step() { echo "=== tests/run.sh: $* ($((SECONDS - started)) s)"; }

step "dependencies"
bash deploy/install-deps.sh

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [ "$release" -eq 1 ]; then
  build="$root/build"
  cmake_args=(-DCMAKE_BUILD_TYPE=Release -DINGESTD_WERROR=ON)
else
  build="$root/build-sanitize"
  cmake_args=(-DCMAKE_BUILD_TYPE=Sanitize "-DCMAKE_CXX_FLAGS_SANITIZE=-Og -DNDEBUG"
              -DINGESTD_WERROR=ON -DINGESTD_SANITIZE=ON)
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
step "build ($(basename "$build"))"
cmake -S . -B "$build" "${cmake_args[@]}" "${launcher[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"

# shellcheck source=tests/pg.sh
source "$root/tests/pg.sh"
work="$(mktemp -d /tmp/ingestd-tests.XXXXXX)"
cleanup() {
  local rc=$?
  pg_stop
  if [ "$rc" -ne 0 ] && [ -f "$work/pg/server.log" ]; then
    echo "--- last lines of the test PostgreSQL log ---" >&2
    tail -n 30 "$work/pg/server.log" >&2 || true
  fi
  rm -rf "$work"
  echo "=== tests/run.sh: exit $rc after $((SECONDS - started)) s"
  exit "$rc"
}
trap cleanup EXIT INT TERM
pg_start "$work/pg"
export INGESTD_TEST_DATABASE_URL="$PG_URL"
echo "test PostgreSQL on 127.0.0.1:$PGPORT"

step "ctest"
(cd "$build" && ctest --output-on-failure --timeout 600 -j"$(nproc)" "${ctest_args[@]}")
pg_stop

if [ "$fuzz" -eq 1 ]; then
  step "fuzzing, ${FUZZ_SECONDS:-30} s per target"
  bash tests/fuzz/run.sh "${FUZZ_SECONDS:-30}" "$root/build-fuzz"
fi

if [ "$bench" -eq 1 ]; then
  step "benchmarks"
  bash tests/bench/run_all.sh "$build"
fi
step "all passed"
