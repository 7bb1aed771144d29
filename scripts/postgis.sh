#!/usr/bin/env bash
# A throwaway PostGIS cluster for the test suite, built from the local PostgreSQL binaries.
#
#   scripts/postgis.sh up DIR     start a cluster in DIR; print its SQLAlchemy URL on stdout
#   scripts/postgis.sh down DIR   stop it and remove DIR
#
# Where the PostGIS extension (or PostgreSQL itself) is missing and we may use the system package
# manager (root, or password-less sudo), it is installed from Debian's packages. Diagnostics go to
# stderr; the exit status is non-zero when no PostGIS can be had.
set -euo pipefail

log() { printf 'postgis: %s\n' "$*" >&2; }

# as_root and apt_install
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/apt.sh"

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ] && command -v pg_config >/dev/null; then dir=$(pg_config --bindir); fi
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && printf '%s\n' "$dir"
}

up() {
  local dir=$1 bin major port url
  bin=$(pg_bindir) || { apt_install postgresql >/dev/null && bin=$(pg_bindir); } \
    || { log "no PostgreSQL binaries (initdb) and no way to install them"; exit 1; }
  major=$(basename "$(dirname "$bin")")
  if ! ls "/usr/share/postgresql/$major/extension/postgis.control" >/dev/null 2>&1; then
    apt_install "postgresql-$major-postgis-3" \
      || { log "PostGIS extension for PostgreSQL $major is missing and cannot be installed"; exit 1; }
  fi

  # initdb refuses to run as root: run the cluster as an unprivileged user.
  local runner=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    runner=(runuser -u postgres --)
  fi
  mkdir -p "$dir"
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "${runner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; log "initdb failed"; exit 1; }
  "${runner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" >&2 \
    || { cat "$dir/server.log" >&2; log "the server did not start"; exit 1; }
  "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q -d postgres \
    -c "CREATE DATABASE rallypoint_test" >&2
  "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -v ON_ERROR_STOP=1 -q -d rallypoint_test \
    -c "CREATE EXTENSION IF NOT EXISTS postgis" >&2 \
    || { log "CREATE EXTENSION postgis failed"; exit 1; }
  url="postgresql+psycopg://postgres@127.0.0.1:$port/rallypoint_test"
  log "PostGIS $("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d rallypoint_test -Atc 'SELECT postgis_lib_version()') on PostgreSQL $major at 127.0.0.1:$port"
  printf '%s\n' "$url"
}

down() {
  local dir=$1 bin runner=()
  [ -d "$dir/data" ] || { rm -rf "$dir"; return 0; }
  bin=$(pg_bindir) || true
  [ "$(id -u)" = 0 ] && runner=(runuser -u postgres --)
  if [ -n "${bin:-}" ]; then "${runner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$dir"
}

case "${1:-}" in
  up) up "${2:?usage: postgis.sh up DIR}" ;;
  down) down "${2:?usage: postgis.sh down DIR}" ;;
  *) echo "usage: scripts/postgis.sh up|down DIR" >&2; exit 2 ;;
esac
