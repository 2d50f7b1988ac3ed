#!/usr/bin/env bash
# Protects the systemd units of deploy/systemd: `systemd-analyze verify` finds nothing wrong
# with any of them (their ExecStart pointed at BUILD_DIR/ingestd, so the command exists); each
# service has what deploy/systemd/README.md promises (Type=notify with a watchdog, restart
# limits, the ingestd user, state and configuration directories, the secrets, the stop
# timeout) and runs a real ingestd subcommand; the five services share one hardening block;
# ingestd-run conflicts with the separate units and the target enables all four; and
# `systemd-analyze security --offline=true` rates every service at most 4.0 ("OK").
#
#   bash tests/deploy/systemd_test.sh BUILD_DIR
#
# User=ingestd need not exist: verify does not resolve users (the .deb creates the user, and
# tests/deploy/package_test.sh checks that), so this test changes nothing on the machine.
# Without systemd-analyze (Debian package `systemd`) it skips (exit 77), or fails under $CI.
set -euo pipefail

build="$(cd "${1:?usage: systemd_test.sh BUILD_DIR}" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
src="$root/deploy/systemd"
binary="$build/ingestd"
max_exposure=4.0

if ! command -v systemd-analyze >/dev/null; then
  echo "systemd_test: systemd-analyze not found (Debian package systemd)" >&2
  [ -n "${CI:-}" ] && exit 1
  exit 77
fi
[ -x "$binary" ] || { echo "systemd_test: no $binary" >&2; exit 1; }

work="$(mktemp -d /tmp/ingestd-systemd.XXXXXX)"
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

stages=(fetcher stager reconciler monitor)
services=()
for s in "${stages[@]}"; do services+=("ingestd-$s.service"); done
services+=(ingestd-run.service)
units=("${services[@]}" ingestd.target)

for u in "${units[@]}"; do
  [ -f "$src/$u" ] || { fail "deploy/systemd/$u is missing"; continue; }
  sed "s#^ExecStart=/usr/bin/ingestd #ExecStart=$binary #" "$src/$u" >"$work/$u"
done
for f in "$src"/*; do
  case "$(basename "$f")" in
    *.service | *.target | *.timer)
      printf '%s\n' "${units[@]}" | grep -qx "$(basename "$f")" \
        || fail "deploy/systemd/$(basename "$f") is not checked here: add it to this test" ;;
  esac
done
[ "$failures" -eq 0 ] || exit 1

# ---------------------------------------------------------------- systemd-analyze verify
# Any line about our units is a finding (errors and warnings alike, e.g. an unknown key or a
# typo in a directive, which systemd only warns about and then ignores).
(cd "$work" && systemd-analyze verify --man=no "${units[@]/#/./}") >"$work/verify.log" 2>&1 || true
if grep -i "ingestd" "$work/verify.log" >"$work/findings.log"; then
  fail "systemd-analyze verify:"
  sed 's/^/    /' "$work/findings.log" >&2
else
  ok "systemd-analyze verify: no finding in ${#units[@]} units"
fi

# ---------------------------------------------------------------- what every service promises
value() { sed -n "s/^$2=//p" "$src/$1"; }  # every value of a directive, one a line
has() {  # has UNIT DIRECTIVE VALUE: the directive is set to exactly this value
  value "$1" "$2" | grep -qxF -- "$3" || fail "$1: expected $2=$3 (got: $(value "$1" "$2" | tr '\n' ' '))"
}
seconds() { systemd-analyze timespan "$1" | sed -n 's/^ *μs: *//p' | awk '{print int($1 / 1000000)}'; }

for u in "${services[@]}"; do
  stage="${u#ingestd-}"
  stage="${stage%.service}"
  has "$u" ExecStart "/usr/bin/ingestd $stage -c /etc/ingestd/ingestd.yaml"
  "$binary" "$stage" --help >/dev/null || fail "$u: \`ingestd $stage --help\` failed"
  for kv in Type=notify NotifyAccess=main Restart=on-failure User=ingestd Group=ingestd \
    StateDirectory=ingestd ConfigurationDirectory=ingestd ProtectSystem=strict \
    NoNewPrivileges=yes PrivateTmp=yes CapabilityBoundingSet= \
    EnvironmentFile=-/etc/ingestd/ingestd.env; do
    has "$u" "${kv%%=*}" "${kv#*=}"
  done
  for d in StartLimitIntervalSec StartLimitBurst LoadCredential; do
    [ -n "$(value "$u" "$d")" ] || fail "$u: no $d="
  done
  [ -z "$(value "$u" DynamicUser)" ] || fail "$u: DynamicUser= (the .deb creates a real user)"
  # Half the watchdog must exceed the monitor's 60 s snapshot statement timeout.
  watchdog="$(seconds "$(value "$u" WatchdogSec)")"
  [ "${watchdog:-0}" -ge 120 ] || fail "$u: WatchdogSec= must be at least 2min (is ${watchdog:-unset} s)"
  # The stages exit within 5 s of SIGTERM; systemd must not kill them before that.
  stop="$(seconds "$(value "$u" TimeoutStopSec)")"
  [ "${stop:-0}" -gt 5 ] || fail "$u: TimeoutStopSec= must exceed the 5 s shutdown (is ${stop:-unset} s)"
done
# One hardening block for all: the [Service] sections are equal but for ExecStart.
service_block() { sed -n '/^\[Service\]/,/^\[Install\]/p' "$src/$1" | grep -v '^ExecStart='; }
for u in "${services[@]}"; do
  diff <(service_block ingestd-run.service) <(service_block "$u") >/dev/null \
    || fail "$u: [Service] differs from ingestd-run.service's (keep the units in step)"
done
ok "every service: notify, watchdog ${watchdog} s, restart limits, user ingestd, stop timeout ${stop} s"

# ingestd-run.service is the alternative to the four: it conflicts with each and the target.
for u in ingestd.target "${services[@]:0:4}"; do
  value ingestd-run.service Conflicts | tr ' ' '\n' | grep -qxF "$u" \
    || fail "ingestd-run.service: no Conflicts=$u"
  [ "$u" = ingestd.target ] && continue
  value ingestd.target Also | tr ' ' '\n' | grep -qxF "$u" || fail "ingestd.target: no Also=$u"
  has "$u" WantedBy ingestd.target
  has "$u" PartOf ingestd.target
done
ok "ingestd-run.service conflicts with ingestd.target and its four services"

# ---------------------------------------------------------------- systemd-analyze security
for u in "${services[@]}"; do
  (cd "$work" && systemd-analyze security --offline=true --no-pager "./$u") >"$work/$u.security" 2>&1 || true
  score="$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$work/$u.security")"
  if [ -z "$score" ]; then
    fail "$u: systemd-analyze security printed no score"
    tail -n 5 "$work/$u.security" >&2
  elif awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
    fail "$u: exposure $score > $max_exposure"
    grep '✗' "$work/$u.security" >&2 || true
  else
    echo "ok: $u exposure $score (at most $max_exposure)"
  fi
done

if [ "$failures" -gt 0 ]; then
  echo "systemd_test: $failures failure(s)" >&2
  exit 1
fi
echo "systemd_test: all checks passed"
