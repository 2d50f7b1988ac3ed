# Throwaway PostgreSQL for tests, benchmarks and the demo. Source it, then:
#   pg_start DIR      initdb in DIR (as the postgres user when root), start on a free
#                     loopback port; exports PGHOST PGPORT PGUSER PG_BIN PG_DIR PG_URL
#   pg_stop           fast shutdown; safe to call twice and from a trap
# The server listens on 127.0.0.1 only, trusts local connections, and is tuned for
# throwaway data (fsync stays on: the crash tests rely on it).

pg_bin_dir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && echo "$d"; done | sort -V | tail -n 1
}

pg_free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

pg_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_start() {
  PG_DIR="$1"
  PG_BIN="$(pg_bin_dir)"
  [ -n "$PG_BIN" ] || { echo "pg.sh: no PostgreSQL server found (apt-get install postgresql-15)" >&2; return 1; }
  mkdir -p "$PG_DIR"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown postgres: "$PG_DIR"
    # runuser must be able to traverse every parent of the data directory.
    chmod o+x "$(dirname "$PG_DIR")" 2>/dev/null || true
  fi
  pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; return 1; }
  PGPORT="$(pg_free_port)"
  pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PG_DIR -c max_connections=200 -c shared_buffers=256MB -c synchronous_commit=on -c max_wal_size=4GB -c checkpoint_timeout=30min" \
    start >"$PG_DIR/pg_ctl.log" 2>&1 || { cat "$PG_DIR/pg_ctl.log" "$PG_DIR/server.log" >&2; return 1; }
  PGHOST=127.0.0.1
  PGUSER=postgres
  PG_URL="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
  export PGHOST PGPORT PGUSER PG_BIN PG_DIR PG_URL
}

pg_stop() {
  [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ] || return 0
  pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}
