#!/usr/bin/env bash
# The one test command. On a fresh Debian machine, as root or with sudo:
#   bash tests/run.sh            install deps if missing, build (Release, -Werror), start a
#                                throwaway PostgreSQL on 127.0.0.1, run ctest, stop it
#   bash tests/run.sh --sanitize the same with ASan+UBSan (separate build dir)
#   bash tests/run.sh --bench    also run the benchmarks in tests/bench/ (not part of CI)
# Exits non-zero on any failure. Extra arguments after -- go to ctest (e.g. -- -R stager).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sanitize=0
bench=0
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize=1 ;;
    --bench) bench=1 ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "tests/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

bash deploy/install-deps.sh

build="$root/build"
cmake_args=(-DCMAKE_BUILD_TYPE=Release -DINGESTD_WERROR=ON)
if [ "$sanitize" -eq 1 ]; then
  build="$root/build-sanitize"
  cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DINGESTD_WERROR=ON -DINGESTD_SANITIZE=ON)
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
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
  exit "$rc"
}
trap cleanup EXIT INT TERM
pg_start "$work/pg"
export INGESTD_TEST_DATABASE_URL="$PG_URL"
echo "test PostgreSQL on 127.0.0.1:$PGPORT"

cd "$build"
ctest --output-on-failure --timeout 600 -j"$(nproc)" "${ctest_args[@]}"

if [ "$bench" -eq 1 ]; then
  cd "$root"
  bash tests/bench/run.sh "$build"
  bash tests/bench/fetch_bench.sh "$build"
  bash tests/bench/reconcile_bench.sh "$build"
fi
