#!/usr/bin/env bash
# The Spark Thrift (JDBC/ODBC) server over the lakeforge metastore and warehouse, for analysts.
#
#   scripts/sql-server.sh start [ENV]   # ENV: an overlay in conf/envs, default shared
#   scripts/sql-server.sh stop|status
#   .venv/bin/beeline -u jdbc:hive2://127.0.0.1:10000/default -e "SHOW TABLES IN gold"
#
# It uses the Spark settings of ENV (written to $LAKEFORGE_HOME/sql-server/spark-defaults.conf
# by lakeforge.session.write_spark_defaults), so it sees the same tables as the jobs. With env
# `shared` the metastore is PostgreSQL (scripts/postgres-metastore.sh start) and jobs may run while
# the server is up; with `local` (Derby) the server holds the metastore and no job can start.
# Binds to 127.0.0.1:${LAKEFORGE_THRIFT_PORT:-10000} only, with no authentication. The pid file and
# log are in $LAKEFORGE_HOME/sql-server. LAKEFORGE_SQL_MASTER overrides the overlay's master
# (local[2] on a small machine); LAKEFORGE_SQL_TIMEOUT (seconds, default 180) bounds the start.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV_BIN="${LAKEFORGE_VENV_BIN:-$REPO/.venv/bin}"
# Absolute, without creating it (only `start` creates folders).
LAKEFORGE_HOME="$(realpath -m "${LAKEFORGE_HOME:-.lakeforge}")"
export LAKEFORGE_HOME
export SPARK_LOCAL_IP=127.0.0.1
SERVER_DIR="$LAKEFORGE_HOME/sql-server"
PID_FILE="$SERVER_DIR/sql-server.pid"
PORT_FILE="$SERVER_DIR/sql-server.port"
LOG_FILE="$SERVER_DIR/sql-server.log"
PORT="${LAKEFORGE_THRIFT_PORT:-10000}"
TIMEOUT="${LAKEFORGE_SQL_TIMEOUT:-180}"
MAIN_CLASS=org.apache.spark.sql.hive.thriftserver.HiveThriftServer2

die() {
  echo "error: $*" >&2
  exit 1
}

running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE")"
  # A stale pid file may name a process that reused the number: check it is our server.
  if kill -0 "$pid" 2>/dev/null && grep -q "$MAIN_CLASS" "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  else
    return 1
  fi
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null
}

start() {
  local env_name="${1:-shared}" pid defaults waited=0
  [ -x "$VENV_BIN/spark-submit" ] || die "$VENV_BIN/spark-submit not found: run ./setup.sh first (or set LAKEFORGE_VENV_BIN)"
  if pid="$(running_pid)"; then
    echo "SQL server already running (pid $pid): jdbc:hive2://127.0.0.1:$(cat "$PORT_FILE" 2>/dev/null || echo "$PORT")/default"
    return 0
  fi
  port_open && die "port $PORT on 127.0.0.1 is already in use: stop what uses it or set LAKEFORGE_THRIFT_PORT"
  mkdir -p "$SERVER_DIR"
  # The venv's pyspark, whatever python3 or SPARK_HOME the caller has.
  SPARK_HOME="$("$VENV_BIN/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
  export SPARK_HOME
  # Writes spark-defaults.conf and driver-classpath into SERVER_DIR; Ivy's chatter goes to setup.log.
  if ! "$VENV_BIN/python" - "$env_name" "$SERVER_DIR" >"$SERVER_DIR/setup.log" 2>&1 <<'EOF'
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import pyspark
from pyspark import SparkConf
from pyspark.java_gateway import launch_gateway

from lakeforge.config import load_environment
from lakeforge.platforms import Platform
from lakeforge.session import spark_conf, write_spark_defaults

env, folder = load_environment(sys.argv[1]), Path(sys.argv[2])
write_spark_defaults(Platform(env).spark_conf("lakeforge-sql"), folder)

# Hive opens each JDBC session under its own class loader, child of the JVM's system class
# loader, which cannot see jars from spark.jars.packages: DeltaCatalog would not be found
# (delta-io/delta#1332). So the resolved jars also go on the system class path, except artifacts
# pyspark ships already (their versions win, e.g. Jackson).
def artifact(file_name: str) -> str:
    match = re.match(r"(.+?)-\d", file_name)
    return match.group(1) if match else file_name

shipped = {artifact(jar.name) for jar in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
resolve = SparkConf(loadDefaults=False)
for key, value in spark_conf(env, "lakeforge-resolve-jars").items():
    if key.startswith("spark.jars"):
        resolve.set(key, value)
gateway = launch_gateway(resolve)
jars = gateway.jvm.java.lang.System.getProperty("spark.jars") or ""
gateway.shutdown()
extra = []
for uri in filter(None, jars.split(",")):
    path = Path(urlparse(uri).path)
    # Spark stores package jars as <organisation>_<artifact>-<version>.jar.
    if artifact(path.name.split("_", 1)[-1]) not in shipped:
        extra.append(str(path))
(folder / "driver-classpath").write_text(":".join(extra) + "\n")
EOF
  then
    die "could not prepare the Spark settings of environment '$env_name'; last lines of $SERVER_DIR/setup.log:
$(tail -n 20 "$SERVER_DIR/setup.log")"
  fi
  defaults="$SERVER_DIR/spark-defaults.conf"
  # Appended after pyspark's own jars (spark.driver.extraClassPath would come first).
  SPARK_DIST_CLASSPATH="$(cat "$SERVER_DIR/driver-classpath")"
  export SPARK_DIST_CLASSPATH

  local args=(--class "$MAIN_CLASS" --name "lakeforge SQL server" --properties-file "$defaults")
  [ -n "${LAKEFORGE_SQL_MASTER:-}" ] && args+=(--master "$LAKEFORGE_SQL_MASTER")
  args+=(
    --hiveconf hive.server2.thrift.bind.host=127.0.0.1
    --hiveconf "hive.server2.thrift.port=$PORT"
  )
  # Run from the server folder so anything written to the working directory stays under LAKEFORGE_HOME.
  (cd "$SERVER_DIR" && exec nohup "$VENV_BIN/spark-submit" "${args[@]}" >"$LOG_FILE" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "$PORT" >"$PORT_FILE"
  echo "starting the SQL server (pid $pid, env $env_name, log $LOG_FILE)"
  until port_open; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      die "the SQL server exited during start-up; last lines of $LOG_FILE:
$(tail -n 20 "$LOG_FILE")"
    fi
    if [ "$waited" -ge "$TIMEOUT" ]; then
      kill "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      die "the SQL server did not accept connections on 127.0.0.1:$PORT within ${TIMEOUT}s (stopped it; set LAKEFORGE_SQL_TIMEOUT to wait longer); last lines of $LOG_FILE:
$(tail -n 20 "$LOG_FILE")"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "SQL server ready after ${waited}s: jdbc:hive2://127.0.0.1:$PORT/default"
}

stop() {
  local pid waited=0
  if ! pid="$(running_pid)"; then
    rm -f "$PID_FILE"
    echo "SQL server is not running"
    return 0
  fi
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$waited" -ge 30 ]; then
      echo "SQL server (pid $pid) did not stop within 30s: killing it" >&2
      kill -9 "$pid" 2>/dev/null || true
      break
    fi
    sleep 1
    waited=$((waited + 1))
  done
  rm -f "$PID_FILE"
  echo "SQL server stopped"
}

status() {
  local pid
  # The port the running server was started with, whatever LAKEFORGE_THRIFT_PORT says now.
  if running_pid >/dev/null && [ -f "$PORT_FILE" ]; then PORT="$(cat "$PORT_FILE")"; fi
  if pid="$(running_pid)" && port_open; then
    echo "SQL server running (pid $pid): jdbc:hive2://127.0.0.1:$PORT/default"
  elif pid="$(running_pid)"; then
    echo "SQL server starting (pid $pid), not yet accepting connections on 127.0.0.1:$PORT"
  else
    echo "SQL server is not running"
    return 3
  fi
}

case "${1:-}" in
  start) start "${2:-shared}" ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start [ENV]|stop|status" ;;
esac
