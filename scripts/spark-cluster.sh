#!/usr/bin/env bash
# A standalone Spark cluster on loopback from the installed pyspark: one master, two workers.
#
#   scripts/spark-cluster.sh start|stop|status
#
# Master spark://127.0.0.1:${LAKEFORGE_SPARK_PORT:-7077}, web UI on ${LAKEFORGE_SPARK_UI_PORT:-8080}
# (workers on the next two ports). Every process binds to 127.0.0.1: on these machines the host
# name resolves to another interface. Logs, pids and work folders live under
# $LAKEFORGE_HOME/spark-cluster. Submit jobs with:
#   .venv/bin/spark-submit --master spark://127.0.0.1:7077 --packages io.delta:delta-spark_4.1_2.13:4.4.0 \
#     libs/lakeforge/cli.py run ingest silver gold --use-case churn --env cluster
set -euo pipefail
cd "$(dirname "$0")/.."

home="${LAKEFORGE_HOME:-$PWD/.lakeforge}"
run="$home/spark-cluster"
port="${LAKEFORGE_SPARK_PORT:-7077}"
ui="${LAKEFORGE_SPARK_UI_PORT:-8080}"
cores="${LAKEFORGE_WORKER_CORES:-1}"
memory="${LAKEFORGE_WORKER_MEMORY:-3g}"
spark_class="$PWD/.venv/bin/spark-class"
export SPARK_LOCAL_IP=127.0.0.1 SPARK_MASTER_HOST=127.0.0.1 SPARK_PUBLIC_DNS=127.0.0.1
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PWD/.venv/bin/python}"

alive_workers() {
  python3 - "$ui" <<'PY' 2>/dev/null || echo 0
import json, sys, urllib.request
print(json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2)).get("aliveworkers", 0))
PY
}

start() {
  mkdir -p "$run"
  if [ -f "$run/master.pid" ] && kill -0 "$(cat "$run/master.pid")" 2>/dev/null; then
    echo "spark cluster already running: spark://127.0.0.1:$port"
    return
  fi
  nohup "$spark_class" org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$port" --webui-port "$ui" >"$run/master.log" 2>&1 &
  echo $! >"$run/master.pid"
  for i in 1 2; do
    mkdir -p "$run/worker$i"
    nohup "$spark_class" org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --cores "$cores" --memory "$memory" --webui-port "$((ui + i))" \
      --work-dir "$run/worker$i" "spark://127.0.0.1:$port" >"$run/worker$i.log" 2>&1 &
    echo $! >"$run/worker$i.pid"
  done
  for _ in $(seq 1 90); do
    if [ "$(alive_workers)" = "2" ]; then
      echo "spark cluster up: spark://127.0.0.1:$port (UI http://127.0.0.1:$ui), 2 workers"
      return
    fi
    sleep 1
  done
  echo "error: the cluster did not report 2 workers within 90 s; see $run/*.log" >&2
  tail -n 20 "$run/master.log" >&2 || true
  stop
  exit 1
}

stop() {
  for name in worker1 worker2 master; do
    if [ -f "$run/$name.pid" ]; then
      kill "$(cat "$run/$name.pid")" 2>/dev/null || true
      rm -f "$run/$name.pid"
    fi
  done
  echo "spark cluster stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) echo "alive workers: $(alive_workers)" ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
