#!/usr/bin/env bash
# Install lakeforge into .venv (Python 3.11 + Java 17 needed). `--dev` adds the test and lint tools.
# The Delta jars are resolved from Maven Central into the local Ivy cache once; later runs are offline.
set -euo pipefail

if ! command -v java >/dev/null 2>&1 && [ ! -x "${JAVA_HOME:-/nonexistent}/bin/java" ]; then
  echo "error: Java 17 is required by Spark but 'java' was not found on PATH or in JAVA_HOME; install a JDK 17 (for example: apt-get install openjdk-17-jdk-headless) and rerun." >&2
  exit 1
fi

cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: Python 3.11 is required ('$PYTHON' is $("$PYTHON" -V 2>&1)); set PYTHON=/path/to/python3.11 and rerun." >&2
  exit 1
fi

extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e ".${extras}"
.venv/bin/python -m lakeforge.session --resolve-jars
if [ -n "$extras" ]; then
  # Airflow has pins of its own: it gets its own environment. The DAG runs the jobs with
  # spark-submit from .venv; pyspark-client (pulled by the Spark provider) must equal pyspark.
  [ -x .venv-airflow/bin/python ] || "$PYTHON" -m venv .venv-airflow
  .venv-airflow/bin/pip install --quiet --disable-pip-version-check \
    "apache-airflow==3.3.2" "apache-airflow-providers-apache-spark==6.3.4" "pyspark-client==4.1.3"
  # SQL for analysts (tests/test_sql_server.py): PostgreSQL keeps the metastore of env `shared`.
  if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
    else
      echo "warning: PostgreSQL is not installed (needed by env 'shared' and tests/test_sql_server.py): sudo apt-get install -y postgresql" >&2
    fi
  fi
  # The PostgreSQL JDBC driver of conf/envs/shared.yml into Spark's Ivy cache, once (no server
  # needed: only a JVM with spark.jars.packages, which resolves the packages and exits).
  .venv/bin/python -c '
from pyspark import SparkConf
from pyspark.java_gateway import launch_gateway
from lakeforge.config import load_environment
launch_gateway(SparkConf(loadDefaults=False).set("spark.jars.packages", load_environment("shared").spark.conf["spark.jars.packages"])).shutdown()
' >/dev/null 2>&1 || { echo "error: could not resolve the jars of env 'shared' from Maven Central" >&2; exit 1; }
fi
echo "lakeforge is installed in .venv"
