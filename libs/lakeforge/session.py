"""How a local or cluster SparkSession is configured and built (`platforms.Platform.session` decides
which platform needs one: on Databricks the runtime hands over its own, never configured here).

Delta extension and catalog, warehouse and Derby metastore under LAKEFORGE_HOME; the master only
when the platform gives one (`local[*]`; spark-submit gives a cluster's).

Jars come from Maven Central through Spark's own package resolution (`spark.jars.packages`);
the first run downloads them into the Ivy cache, later runs resolve offline.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from pathlib import Path

from lakeforge import atomic
from lakeforge.config import Environment, lakeforge_home
from lakeforge.errors import JavaMissingError

SCALA_VERSION = "2.13"
LOCAL_DEFAULTS = {
    "spark.ui.showConsoleProgress": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.databricks.delta.snapshotPartitions": "2",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.memory": "6g",
    # Cached batches (silver keeps each typed batch for GX and its writes) are built 1.7x faster
    # uncompressed (1M orders: 3.3 s against 5.5 s); they spill to disk when memory runs short.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
}


def require_java() -> None:
    """Fail with one clear line when no Java runtime is on PATH or JAVA_HOME."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").exists():
        return
    if shutil.which("java") is None:
        raise JavaMissingError(
            "Java 17 is required by Spark but `java` was not found: install a JDK 17 and put it on PATH"
        )


def delta_package() -> str:
    """The Delta jar's Maven coordinate for the installed delta-spark and pyspark (derived as delta's own
    `configure_spark_with_delta_pip` does), so the jar and the Python package never disagree. The only place
    the coordinate is made: the DAG and scripts/spark-cluster.sh are tested to agree with it."""
    import pyspark

    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_{SCALA_VERSION}:{importlib.metadata.version('delta-spark')}"


def jar_packages(env: Environment) -> str:
    """Delta's jar, then the packages the environment adds (`spark.jars.packages` in its Spark conf)."""
    extra = [p.strip() for p in env.spark.conf.get("spark.jars.packages", "").split(",") if p.strip()]
    return ",".join([delta_package(), *(p for p in extra if not p.startswith("io.delta:"))])


def spark_conf(env: Environment, app_name: str, master: str | None = None) -> dict[str, str]:
    """Every Spark setting for a local or cluster session (also written out for spark-sql and beeline)."""
    warehouse = env.path("warehouse")
    metastore = env.path("metastore")
    conf = {
        "spark.app.name": app_name,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": warehouse,
        "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={metastore}/metastore_db;create=true",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={metastore}",
        "spark.pyspark.python": sys.executable,
        **LOCAL_DEFAULTS,
        **env.spark.conf,
        "spark.jars.packages": jar_packages(env),
    }
    if master:
        conf["spark.master"] = master
    return conf


def build_session(env: Environment, app_name: str, master: str | None):
    """A SparkSession configured for `env` (imports pyspark lazily so config errors surface first)."""
    require_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in spark_conf(env, app_name, master).items():
        builder = builder.config(key, value)
    Path(env.path("metastore")).mkdir(parents=True, exist_ok=True)
    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    _silence(spark, HIVE_FALSE_ALARM)
    if spark.sparkContext.master.startswith("local"):
        for logger in TASK_FAILURE_COPIES:
            _silence(spark, logger)
    return spark


# Every overwrite of a Delta table first asks the Hive metastore to alter the table "in a Hive compatible
# way"; Hive refuses (Delta keeps a placeholder schema there) and this logger prints "ERROR Failed to alter
# table", then Spark stores the schema in its own format, as it does for every Delta table. The write
# succeeded: the line is a false alarm on every run, so this one logger is turned off.
HIVE_FALSE_ALARM = "org.apache.hadoop.hive.metastore.HiveAlterHandler"


# In local mode the executor runs inside the driver, and a failed task's error is the failed job's error the
# driver receives (and the CLI prints in one line, or whole with -v). The executor's, the scheduler's and
# Delta's writer's own copies of its stack trace would print it three times more: a file the ingest rejects
# (and lands the rest of its batch without) would fill a screen.
TASK_FAILURE_COPIES = (
    "org.apache.spark.executor.Executor",
    "org.apache.spark.scheduler.TaskSetManager",
    "org.apache.spark.sql.delta.files.DeltaFileFormatWriter",
)


def _silence(spark, logger: str) -> None:
    log4j = spark._jvm.org.apache.logging.log4j
    log4j.core.config.Configurator.setLevel(logger, log4j.Level.OFF)


def write_spark_defaults(conf: dict[str, str], folder: Path) -> Path:
    """Write `spark-defaults.conf` so `spark-sql`, beeline and the Thrift server see the same metastore."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "spark-defaults.conf"
    lines = [f"{key} {value}" for key, value in conf.items() if key != "spark.app.name"]
    atomic.write_text(target, "\n".join(lines) + "\n")
    return target


def private_home() -> Path:
    """LAKEFORGE_HOME created owner-only (0700) when missing, so that no other local user reaches the landing
    files, tables, metastore or MLflow store under it, and this process's umask narrowed to 077 (what
    Python writes there is 0600; Spark's Hadoop file system still writes 0644, unreachable through the
    0700 home). A home that exists keeps its mode; the PostgreSQL metastore script adds o+x for its user."""
    home = lakeforge_home()
    if not home.exists():
        home.mkdir(parents=True, mode=0o700)
    os.umask(0o077)
    return home


def resolve_jars() -> None:
    """Start and stop a local session once, so Spark downloads the jars into its Ivy cache."""
    from lakeforge.config import load_environment

    private_home()
    env = load_environment("local")
    build_session(env, "lakeforge-resolve-jars", env.spark.master or "local[*]").stop()


if __name__ == "__main__":
    if sys.argv[1:] == ["--resolve-jars"]:
        resolve_jars()
