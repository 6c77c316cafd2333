#!/usr/bin/env bash
# A PostgreSQL server for the Hive metastore, so jobs and the SQL server can share it at once
# (the embedded Derby metastore admits one process at a time).
#
#   scripts/postgres-metastore.sh start|stop|status
#
# The cluster lives in $LAKEFORGE_HOME/postgres (data/, run/ for the socket, postgres.log), listens
# on 127.0.0.1:${LAKEFORGE_PG_PORT:-55432} only, and trusts loopback and socket connections: no
# password anywhere, but any local user of this machine can connect, so keep it on single-user
# machines. `start` creates the cluster, the role `lakeforge` and the database `metastore` when
# missing; running it again changes nothing. Set LAKEFORGE_PG_BIN to pick a PostgreSQL bin folder.
#
# PostgreSQL refuses to run as root. Run as root, this script runs every PostgreSQL command as the
# unprivileged OS user ${LAKEFORGE_PG_OS_USER:-postgres} (created when missing), which owns
# $LAKEFORGE_HOME/postgres; the folders above it must be searchable by that user (mode o+x).
set -euo pipefail
# runuser and useradd live in /usr/sbin, which a minimal PATH (cron, CI with env -i) leaves out.
export PATH="$PATH:/usr/sbin:/sbin"

# Absolute, without creating it (only `start` creates folders).
LAKEFORGE_HOME="$(realpath -m "${LAKEFORGE_HOME:-.lakeforge}")"
PG_HOME="$LAKEFORGE_HOME/postgres"
PG_DATA="$PG_HOME/data"
PG_SOCKET_DIR="$PG_HOME/run"
PG_LOG="$PG_HOME/postgres.log"
PG_PORT="${LAKEFORGE_PG_PORT:-55432}"
PG_OS_USER="${LAKEFORGE_PG_OS_USER:-postgres}"
METASTORE_DB=metastore
METASTORE_ROLE=lakeforge

die() {
  echo "error: $*" >&2
  exit 1
}

find_pg_bin() {
  local candidate
  if [ -n "${LAKEFORGE_PG_BIN:-}" ]; then
    echo "$LAKEFORGE_PG_BIN"
    return
  fi
  if command -v pg_ctl >/dev/null 2>&1; then
    candidate="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
    [ -x "$candidate/initdb" ] && [ -x "$candidate/psql" ] && echo "$candidate" && return
  fi
  # Debian keeps the server binaries off PATH, one folder per major version: take the newest.
  candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$candidate" ] && [ -x "$candidate/pg_ctl" ] && echo "$candidate"
  return 0
}

install_postgres() {
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    # Debian's package also sets up a cluster of its own (port 5432); lakeforge does not use it.
    echo "PostgreSQL is not installed: installing it with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
  else
    die "PostgreSQL (initdb, pg_ctl, psql) is not installed: install it (Debian/Ubuntu: sudo apt-get install -y postgresql) or set LAKEFORGE_PG_BIN to its bin folder"
  fi
}

# Run a PostgreSQL command as the cluster owner, from a folder that user can read.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd "$PG_HOME" && runuser -u "$PG_OS_USER" -- "$@")
  else
    (cd "$PG_HOME" && "$@")
  fi
}

ensure_owner() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  mkdir -p "$PG_SOCKET_DIR"
  chown "$PG_OS_USER" "$PG_HOME" "$PG_SOCKET_DIR"
  # LAKEFORGE_HOME is owner-only (0700): the cluster's user may pass through it to its own folder (o+x:
  # search, no listing); every other folder in it stays 0700.
  chmod o+x "$LAKEFORGE_HOME"
  if [ -d "$PG_DATA" ]; then chown -R "$PG_OS_USER" "$PG_DATA"; fi
  runuser -u "$PG_OS_USER" -- test -w "$PG_HOME" \
    || die "user '$PG_OS_USER' cannot reach $PG_HOME: make the folders above it searchable (chmod o+x) or set LAKEFORGE_HOME elsewhere"
}

pg_running() {
  [ -f "$PG_DATA/PG_VERSION" ] && as_owner "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

psql_admin() {
  as_owner "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -U postgres -d postgres -tA "$@"
}

init_cluster() {
  mkdir -p "$PG_SOCKET_DIR"
  ensure_owner
  chmod 700 "$PG_SOCKET_DIR"
  as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$PG_HOME/initdb.log" \
    || die "initdb failed, see $PG_HOME/initdb.log"
  # Only the socket and loopback, nothing from the network.
  cat >"$PG_DATA/pg_hba.conf" <<'EOF'
local all all trust
host all all 127.0.0.1/32 trust
EOF
}

start() {
  PG_BIN="$(find_pg_bin)"
  if [ -z "$PG_BIN" ]; then
    install_postgres
    PG_BIN="$(find_pg_bin)"
    [ -n "$PG_BIN" ] || die "PostgreSQL was installed but pg_ctl was not found; set LAKEFORGE_PG_BIN to its bin folder"
  fi
  mkdir -p "$PG_HOME"
  [ -f "$PG_DATA/PG_VERSION" ] || init_cluster
  ensure_owner
  if pg_running; then
    # A running server keeps the port it was started with.
    PG_PORT="$(sed -n 4p "$PG_DATA/postmaster.pid")"
    echo "PostgreSQL metastore already running on 127.0.0.1:$PG_PORT ($PG_DATA)"
  else
    # Listening address, port and socket are given at every start so that moving LAKEFORGE_HOME or
    # changing LAKEFORGE_PG_PORT needs no edit of postgresql.conf.
    as_owner "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_SOCKET_DIR -c unix_socket_permissions=0700" >/dev/null \
      || die "PostgreSQL did not start (is port $PG_PORT free? set LAKEFORGE_PG_PORT); last lines of $PG_LOG: $(tail -n 5 "$PG_LOG" 2>/dev/null)"
    echo "PostgreSQL metastore started on 127.0.0.1:$PG_PORT ($PG_DATA)"
  fi
  local found
  found="$(psql_admin -c "SELECT count(*) FROM pg_roles WHERE rolname = '$METASTORE_ROLE'")"
  if [ "$found" = 0 ]; then
    psql_admin -c "CREATE ROLE $METASTORE_ROLE LOGIN"
  fi
  found="$(psql_admin -c "SELECT count(*) FROM pg_database WHERE datname = '$METASTORE_DB'")"
  if [ "$found" = 0 ]; then
    # The owner may create tables in the public schema (PostgreSQL 15 no longer lets everyone).
    psql_admin -c "CREATE DATABASE $METASTORE_DB OWNER $METASTORE_ROLE ENCODING 'UTF8'"
  fi
  echo "metastore: jdbc:postgresql://127.0.0.1:$PG_PORT/$METASTORE_DB (user $METASTORE_ROLE)"
}

stop() {
  PG_BIN="$(find_pg_bin)"
  if [ -n "$PG_BIN" ] && pg_running; then
    as_owner "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
    echo "PostgreSQL metastore stopped"
  else
    echo "PostgreSQL metastore is not running"
  fi
}

status() {
  PG_BIN="$(find_pg_bin)"
  if [ -n "$PG_BIN" ] && pg_running; then
    PG_PORT="$(sed -n 4p "$PG_DATA/postmaster.pid")"
    echo "PostgreSQL metastore running on 127.0.0.1:$PG_PORT ($PG_DATA)"
  else
    echo "PostgreSQL metastore is not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
