#!/usr/bin/env bash
# Installs every Debian package that building, testing and running ingestd needs.
# Idempotent: packages already present are not touched; apt-get update runs only when
# something is missing. Needs root (CI and the dev machines run as root).
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config
  # libraries the binary links
  libboost-dev libboost-program-options-dev libboost-system-dev
  libpq-dev libsimdjson-dev libcurl4-openssl-dev libyaml-cpp-dev
  prometheus-cpp-dev libspdlog-dev libfmt-dev libsystemd-dev
  # tests
  doctest-dev postgresql-15 postgresql-client-15 procps
  # a real Prometheus scrapes the monitor in tests (promtool checks metrics and rules)
  prometheus
  # benchmarks: peak RSS via /usr/bin/time, statistics in python3
  time python3
  # fuzzing (tests/fuzz/): clang with libFuzzer and the sanitizer runtimes
  clang libclang-rt-14-dev
  # packaging: dpkg-shlibdeps fills the .deb's Depends; systemd-analyze checks the units
  dpkg-dev file systemd
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
