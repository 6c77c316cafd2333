"""Analysts query through the SQL server (Spark Thrift + beeline) while a job writes the same Delta table.

PostgreSQL and the Thrift server are started by `scripts/postgres-metastore.sh` and `scripts/sql-server.sh`
on free loopback ports, under a LAKEFORGE_HOME of their own, so a developer's servers are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import SHUFFLE_PARTITIONS
from lakeforge.config import load_environment
from lakeforge.session import delta_package, spark_conf

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
BEELINE = Path(sys.executable).with_name("beeline")
ROWS_PER_BATCH = 100
WRITE_SECONDS = 20

# The job: its own SparkSession on env `shared`; appends a batch at a time, for at least `min_seconds` and
# then until the stop file exists (so slow machines still get several queries in while it writes).
WRITER = """
import json, sys, time
from pathlib import Path
from lakeforge.config import load_environment
from lakeforge.platforms import Platform

rows_per_batch, min_seconds, stop = int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
spark = Platform(load_environment("shared")).session("lakeforge-test-writer")
spark.sql("CREATE DATABASE IF NOT EXISTS gold")
# No checkpoint while the test runs: writing one takes seconds on a busy machine and proves nothing here.
spark.sql(
    "CREATE TABLE gold.sales (batch INT, sale_id BIGINT, amount DOUBLE) USING delta"
    " TBLPROPERTIES ('delta.checkpointInterval' = '1000')"
)
print(json.dumps({"rows": 0, "batches": 0}), flush=True)
batches, started = 0, time.monotonic()
while time.monotonic() - started < min_seconds or not (stop.exists() or time.monotonic() - started > 150):
    start = batches * rows_per_batch
    batch = spark.range(start, start + rows_per_batch).selectExpr(
        f"{batches} AS batch", "id AS sale_id", "id * 0.5 AS amount"
    )
    batch.write.format("delta").mode("append").saveAsTable("gold.sales")
    batches += 1
    print(json.dumps({"rows": batches * rows_per_batch, "batches": batches}), flush=True)
print(json.dumps({"rows": batches * rows_per_batch, "batches": batches, "done": True}), flush=True)
spark.stop()
"""
QUERIES_WHILE_WRITING = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _script(name: str, action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / name), action], env=env, capture_output=True, text=True, timeout=300)


def _started(result: subprocess.CompletedProcess) -> None:
    if result.returncode:
        pytest.fail(f"{result.args[0]} start exited {result.returncode}:\n{result.stdout}\n{result.stderr}")


def _shared_env_for_test(conf: Path, pg_port: int) -> None:
    """conf/envs/shared.yml pointed at the test's PostgreSQL port, on local[2] with small JVMs (beside the
    local.yml it extends)."""
    data = yaml.safe_load((REPO / "conf" / "envs" / "shared.yml").read_text())
    data["spark"]["master"] = "local[2]"
    data["spark"]["conf"].update(
        {
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:postgresql://127.0.0.1:{pg_port}/metastore",
            "spark.driver.memory": "2g",
            "spark.sql.shuffle.partitions": SHUFFLE_PARTITIONS,
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        }
    )
    (conf / "envs").mkdir(parents=True)
    (conf / "envs" / "shared.yml").write_text(yaml.safe_dump(data))
    (conf / "envs" / "local.yml").write_text((REPO / "conf" / "envs" / "local.yml").read_text())


@pytest.fixture(scope="module")
def sql_server():
    """PostgreSQL metastore and SQL server on free ports; yields (environment for subprocesses, Thrift port)."""
    # Not tmp_path: pytest's folders are private (0700), and as root PostgreSQL runs as another user
    # that must reach $LAKEFORGE_HOME/postgres.
    home = Path(tempfile.mkdtemp(prefix="lakeforge-sql-"))
    home.chmod(0o755)
    pg_port, thrift_port = _free_port(), _free_port()
    _shared_env_for_test(home / "conf", pg_port)
    env = {
        **os.environ,
        "LAKEFORGE_HOME": str(home),
        "LAKEFORGE_CONF": str(home / "conf"),
        "LAKEFORGE_PG_PORT": str(pg_port),
        "LAKEFORGE_THRIFT_PORT": str(thrift_port),
        "LAKEFORGE_SQL_MASTER": "local[2]",
        "PATH": f"{BEELINE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    env.pop("SPARK_HOME", None)
    try:
        _started(_script("postgres-metastore.sh", "start", env))
        _started(_script("sql-server.sh", "start", env))
        yield env, thrift_port
    finally:
        _script("sql-server.sh", "stop", env)
        _script("postgres-metastore.sh", "stop", env)
        shutil.rmtree(home, ignore_errors=True)


def _beeline(port: int, query: str, env: dict[str, str]) -> list[str]:
    """The one result row of `query`, read through JDBC as an analyst would."""
    command = [str(BEELINE), "-u", f"jdbc:hive2://127.0.0.1:{port}/default", "--silent=true"]
    command += ["--outputformat=csv2", "--showHeader=false", "-e", query]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode or not lines:
        pytest.fail(f"beeline exited {result.returncode} on {query!r}:\n{result.stdout}\n{result.stderr[-3000:]}")
    # Beeline echoes its prompt before the row when not on a terminal.
    return re.sub(r"^\d+: jdbc:hive2://\S+> ", "", lines[-1]).split(",")


def _follow(process: subprocess.Popen, progress: list[dict]) -> threading.Thread:
    def read() -> None:
        for line in process.stdout:
            if line.startswith("{"):
                progress.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


@pytest.mark.slow
def test_analysts_read_consistent_counts_while_a_job_appends(sql_server):
    env, port = sql_server
    home = Path(env["LAKEFORGE_HOME"])
    (home / "writer.py").write_text(WRITER)
    progress: list[dict] = []
    with (home / "writer.log").open("w") as log:
        writer = subprocess.Popen(
            [sys.executable, str(home / "writer.py"), str(ROWS_PER_BATCH), str(WRITE_SECONDS), str(home / "stop")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    reader = _follow(writer, progress)
    try:
        # Warms the server's Delta code up while the job's JVM starts (a first query takes seconds more).
        _beeline(port, "CREATE TABLE default.warm_up USING delta AS SELECT 1 AS x; SELECT count(*) FROM warm_up", env)
        deadline = time.monotonic() + 120
        while not progress and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert progress, f"the writer never created gold.sales:\n{(home / 'writer.log').read_text()[-3000:]}"

        counts_while_writing, seconds_per_query = [], []
        while not progress[-1].get("done") and writer.poll() is None:
            started = time.monotonic()
            counts_while_writing.append(int(_beeline(port, "SELECT count(*) FROM gold.sales", env)[0]))
            seconds_per_query.append(round(time.monotonic() - started, 1))
            if len(counts_while_writing) == QUERIES_WHILE_WRITING:
                (home / "stop").touch()

        writer.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == 0, f"the writer failed:\n{(home / 'writer.log').read_text()[-3000:]}"

    committed = {step["rows"] for step in progress}
    written = progress[-1]
    assert written.get("done") and written["batches"] >= 3, progress
    assert len(counts_while_writing) >= QUERIES_WHILE_WRITING, (counts_while_writing, seconds_per_query)
    assert counts_while_writing == sorted(counts_while_writing), "a later query saw fewer rows"
    assert len(set(counts_while_writing)) >= 2, f"every query saw the same count: {counts_while_writing}"
    # Each query sees a whole commit of the job, never part of a batch.
    assert set(counts_while_writing) <= committed, (counts_while_writing, sorted(committed))

    rows = written["rows"]
    final = _beeline(port, "SELECT count(*), count(DISTINCT sale_id), sum(sale_id), max(batch) FROM gold.sales", env)
    assert [int(value) for value in final] == [rows, rows, rows * (rows - 1) // 2, written["batches"] - 1]


def test_shared_environment_keeps_the_metastore_in_postgresql():
    conf = spark_conf(load_environment("shared"), "check")
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"].startswith("jdbc:postgresql://127.0.0.1:")
    assert conf["spark.hadoop.javax.jdo.option.ConnectionDriverName"] == "org.postgresql.Driver"
    packages = conf["spark.jars.packages"].split(",")
    assert delta_package() in packages and any(p.startswith("org.postgresql:postgresql:") for p in packages)
    assert not any("password" in key.lower() for key in conf), "no password in config: trust on loopback"


def test_sql_server_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _script(
            "sql-server.sh",
            "start",
            {**os.environ, "LAKEFORGE_HOME": str(tmp_path), "LAKEFORGE_THRIFT_PORT": str(port)},
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert not (tmp_path / "sql-server" / "sql-server.pid").exists()


@pytest.mark.parametrize("name", ["postgres-metastore.sh", "sql-server.sh"])
def test_scripts_print_their_usage_on_a_wrong_action(name, tmp_path):
    result = _script(name, "restart-everything", {**os.environ, "LAKEFORGE_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert "usage:" in result.stderr and "start" in result.stderr
