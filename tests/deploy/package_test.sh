#!/usr/bin/env bash
# Protects the Debian package (deploy/packaging/): `cpack -G DEB` builds it from BUILD_DIR; it
# holds the binary, every systemd unit of deploy/systemd, the sample config and environment
# file as conffiles, the migrations, docs, dashboards and alert rules; it depends on the
# shared libraries the binary links. Installed with apt-get (as root) it creates the ingestd
# user and /var/lib/ingestd, starts nothing, and its sample config passes check-config with
# the sample environment; an admin's edit of a conffile survives a reinstall; `apt-get
# remove` keeps only the configuration and `apt-get purge` leaves nothing of the package.
#
#   bash tests/deploy/package_test.sh BUILD_DIR
# Needs root for the install part: without it, it checks the package and skips the rest
# (exit 77, ctest's skip), or fails when $CI is set. It purges any ingestd package already
# installed first (this is a test machine's job).
set -euo pipefail

build="$(cd "${1:?usage: package_test.sh BUILD_DIR}" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(mktemp -d /tmp/ingestd-package.XXXXXX)"
chmod 755 "$out"  # apt's sandbox user (_apt) reads the .deb from here
cleanup() {
  local rc=$?
  [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ] || { [ -f "$out/apt.log" ] && tail -n 30 "$out/apt.log" >&2; }
  rm -rf "$out"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "package_test: FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# ---------------------------------------------------------------- build the package
cpack -G DEB --config "$build/CPackConfig.cmake" -B "$out" >"$out/cpack.log" 2>&1 \
  || { tail -n 40 "$out/cpack.log" >&2; fail "cpack -G DEB failed"; }
debs=("$out"/ingestd_*.deb)
[ "${#debs[@]}" -eq 1 ] && [ -f "${debs[0]}" ] || fail "cpack wrote no single ingestd_*.deb: ${debs[*]}"
deb="${debs[0]}"
ok "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

# ---------------------------------------------------------------- what it holds
version="$(sed -n 's/^project(ingestd VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")"
[ "$(dpkg-deb -f "$deb" Package)" = ingestd ] || fail "Package is not ingestd"
[ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || fail "Version $(dpkg-deb -f "$deb" Version) is not the project's $version"
depends="$(dpkg-deb -f "$deb" Depends)"
for lib in libpq5 libyaml-cpp libcurl libsystemd0 libprometheus-cpp-core adduser; do
  [[ "$depends" == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
ok "ingestd $version, Depends: $depends"

dpkg-deb -c "$deb" | awk '{ print $1, $NF }' | sed 's| \./| /|' >"$out/contents"
has() {  # has PATH [MODE]: the package holds PATH (with ls-style MODE if given)
  grep -q -x -- "${2:-[-dl][-rwxs]*} $1" "$out/contents" || fail "the package lacks $1 ${2:-}"
}
has /usr/bin/ingestd "-rwxr-xr-x"
has /etc/ingestd/ingestd.yaml "-rw-r--r--"
has /etc/ingestd/ingestd.env "-rw-r-----"
has /usr/share/doc/ingestd/README.md
has /usr/share/doc/ingestd/CONFIG.md
n_sql=0
for f in "$root"/sql/[0-9][0-9][0-9]_*.sql; do
  has "/usr/share/ingestd/sql/$(basename "$f")"
  n_sql=$((n_sql + 1))
done
[ "$n_sql" -gt 0 ] || fail "no migration in $root/sql"
n_units=0
for f in "$root"/deploy/systemd/*.service "$root"/deploy/systemd/*.target "$root"/deploy/systemd/*.timer; do
  [ -f "$f" ] || continue
  has "/lib/systemd/system/$(basename "$f")"
  n_units=$((n_units + 1))
done
n_dash=0
for dir in grafana prometheus; do
  [ -d "$root/deploy/$dir" ] || continue
  while IFS= read -r f; do
    has "/usr/share/ingestd/${f#"$root"/deploy/}"
    n_dash=$((n_dash + 1))
  done < <(find "$root/deploy/$dir" -type f)
done
ok "binary, config, $n_sql migrations, $n_units systemd units, $n_dash dashboard/rule files, docs"

dpkg-deb -e "$deb" "$out/control"
diff <(sort "$out/control/conffiles") <(printf '%s\n' /etc/ingestd/ingestd.env /etc/ingestd/ingestd.yaml) \
  || fail "conffiles should list exactly ingestd.yaml and ingestd.env"
for s in postinst prerm postrm; do
  [ -x "$out/control/$s" ] || fail "no executable $s"
  sh -n "$out/control/$s" || fail "$s is not valid sh"
  # Installing must never start (or enable) a service: the config has to be edited first.
  if grep -Eq '^[[:space:]]*(systemctl|deb-systemd-invoke|invoke-rc.d|service)[[:space:]].*(start|enable)' \
      "$out/control/$s"; then
    fail "$s starts or enables a service"
  fi
done
ok "conffiles and maintainer scripts"

# ---------------------------------------------------------------- install, use, remove, purge
if [ "$(id -u)" -ne 0 ]; then
  [ -n "${CI:-}" ] && fail "installing the package needs root under CI"
  echo "package_test: not root: the package was checked, the install test is skipped"
  exit 77
fi
export DEBIAN_FRONTEND=noninteractive
apt=(apt-get -y -q -o DPkg::Lock::Timeout=300
     -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
if dpkg-query -W -f='${Status}' ingestd 2>/dev/null | grep -q 'install ok\|config-files'; then
  echo "package_test: purging the ingestd package already on this machine"
  "${apt[@]}" purge ingestd >>"$out/apt.log" 2>&1 || fail "purging the previous ingestd failed"
fi
user_before=no
getent passwd ingestd >/dev/null && user_before=yes

# The processes running /usr/bin/ingestd (there must be none: nothing starts by itself).
packaged_processes() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = /usr/bin/ingestd ] && echo "${p#/proc/}"
  done
  return 0
}

"${apt[@]}" install "$deb" >>"$out/apt.log" 2>&1 || fail "apt-get install $(basename "$deb") failed"
dpkg-query -W -f='${Status}' ingestd | grep -q 'install ok installed' || fail "ingestd is not installed"
[ -x /usr/bin/ingestd ] || fail "/usr/bin/ingestd missing after install"
getent passwd ingestd >/dev/null || fail "no ingestd user"
getent group ingestd >/dev/null || fail "no ingestd group"
[ "$(stat -c '%U:%G %a' /var/lib/ingestd)" = "ingestd:ingestd 750" ] \
  || fail "/var/lib/ingestd is $(stat -c '%U:%G %a' /var/lib/ingestd)"
[ "$(stat -c '%U:%G %a' /etc/ingestd/ingestd.env)" = "root:ingestd 640" ] \
  || fail "/etc/ingestd/ingestd.env is $(stat -c '%U:%G %a' /etc/ingestd/ingestd.env)"
[ "$(dpkg-query -W -f='${Conffiles}' ingestd | awk 'NF { print $1 }' | sort | tr '\n' ' ')" = \
  "/etc/ingestd/ingestd.env /etc/ingestd/ingestd.yaml " ] || fail "dpkg does not treat both as conffiles"
[ -z "$(packaged_processes)" ] || fail "installing started ingestd: pids $(packaged_processes)"
ok "installed: ingestd user and group, /var/lib/ingestd, conffiles, nothing started"

# The sample config passes check-config with the sample environment, as root (default path)
# and as the ingestd user the services run as.
(
  set -a
  # shellcheck disable=SC1091
  . /etc/ingestd/ingestd.env
  set +a
  /usr/bin/ingestd check-config >"$out/check.txt" 2>&1 || { cat "$out/check.txt" >&2; exit 1; }
  runuser -u ingestd -- /usr/bin/ingestd check-config -c /etc/ingestd/ingestd.yaml >/dev/null 2>&1
) || fail "ingestd check-config -c /etc/ingestd/ingestd.yaml failed with /etc/ingestd/ingestd.env"
grep -q 'database.url: .*\*\*\*' "$out/check.txt" || fail "check-config did not mask the database password"
ok "check-config accepts /etc/ingestd/ingestd.yaml with /etc/ingestd/ingestd.env (root and ingestd)"

# A conffile the admin edited survives a reinstall; postinst runs twice without harm.
echo "# edited by package_test" >>/etc/ingestd/ingestd.yaml
"${apt[@]}" install --reinstall "$deb" >>"$out/apt.log" 2>&1 || fail "apt-get install --reinstall failed"
grep -q '^# edited by package_test$' /etc/ingestd/ingestd.yaml || fail "reinstall overwrote the edited ingestd.yaml"
[ "$(stat -c '%U:%G %a' /etc/ingestd/ingestd.env)" = "root:ingestd 640" ] || fail "reinstall changed ingestd.env's mode"
ok "reinstall keeps the edited config"

"${apt[@]}" remove ingestd >>"$out/apt.log" 2>&1 || fail "apt-get remove failed"
dpkg-query -W -f='${Status}' ingestd | grep -q 'config-files' || fail "after remove, ingestd is not in config-files state"
[ ! -e /usr/bin/ingestd ] || fail "/usr/bin/ingestd left after remove"
for f in "$root"/deploy/systemd/*.service "$root"/deploy/systemd/*.target "$root"/deploy/systemd/*.timer; do
  [ -f "$f" ] || continue
  [ ! -e "/lib/systemd/system/$(basename "$f")" ] || fail "unit $(basename "$f") left after remove"
done
[ -f /etc/ingestd/ingestd.yaml ] || fail "remove deleted the configuration (only purge may)"
ok "remove: binary and units gone, configuration kept"

"${apt[@]}" purge ingestd >>"$out/apt.log" 2>&1 || fail "apt-get purge failed"
if dpkg-query -W -f='${Status}' ingestd 2>/dev/null | grep -q 'installed\|config-files'; then
  fail "dpkg still knows ingestd after purge"
fi
left=()
while read -r _ path; do
  [[ "$path" == */ ]] && continue  # shared directories such as /usr/bin/ stay
  [ -e "$path" ] && left+=("$path")
done <"$out/contents"
for path in /etc/ingestd /var/lib/ingestd /usr/share/ingestd /usr/share/doc/ingestd; do
  [ -e "$path" ] && left+=("$path")
done
[ "${#left[@]}" -eq 0 ] || fail "purge left: ${left[*]}"
if [ "$user_before" = no ] && getent passwd ingestd >/dev/null; then
  fail "purge left the ingestd user it created"
fi
ok "purge: no file, directory or user of the package left"
