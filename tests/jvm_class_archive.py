"""A class-data-sharing archive of the classes a Spark driver loads, made once per virtual environment.

Every JVM the tests start reads, parses and verifies the same ten thousand classes of Spark, Hive, Delta
and their libraries before it does any work. Java 17 can dump the classes a JVM loaded into an archive
(`-XX:ArchiveClassesAtExit`) that later JVMs map instead (`-XX:SharedArchiveFile`). Measured in pairs of
fresh processes (session, first query, Hive metastore, first Delta reads): 30 and 32 s without the
archive, 21 and 21 s with it.

The archive lives in the virtual environment, beside the Spark jars it was made from, so a new environment
makes its own. A JVM whose class path or Java differs from the archive's ignores it and loads its classes
as before (`-Xlog:cds*=off` keeps that silent: its warning would otherwise go to stdout).

Run as a script, this module is the workload the archive is made from: a small tour of what the suite
does (Delta writes, MERGE, history, time travel, a streaming file source, SQL, a Spark ML fit).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MAKING_ARCHIVE = "LAKEFORGE_MAKING_CLASS_ARCHIVE"
QUIET = "-Xlog:cds*=off"


def _archive_path() -> Path | None:
    """Where the archive for this Java and this environment's Spark lives; None without Java or pyspark."""
    java = shutil.which("java")
    try:
        import pyspark
    except ImportError:
        return None
    if java is None:
        return None
    java = os.path.realpath(java)
    jars = Path(pyspark.__file__).parent / "jars"
    identity = f"{java} {os.stat(java).st_mtime_ns} {pyspark.__version__} {jars.stat().st_mtime_ns}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return Path(sys.prefix) / "share" / "lakeforge" / f"spark-classes-{key}.jsa"


def sharing_options() -> str:
    """The JVM options that map the archive, making it first if this environment has none yet.

    Returns "" when no archive can be made (no Java, or the workload failed): the tests then run as
    they would without it, only slower, and the reason is printed.
    """
    archive = _archive_path()
    if archive is None:
        return ""
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lakeforge-class-archive-") as work:
            made = Path(work) / "spark-classes.jsa"
            options = f"{os.environ.get('JAVA_TOOL_OPTIONS', '')} -XX:ArchiveClassesAtExit={made} {QUIET}"
            result = subprocess.run(
                [sys.executable, __file__, work],
                env={**os.environ, "JAVA_TOOL_OPTIONS": options.strip(), MAKING_ARCHIVE: "1"},
                capture_output=True,
                text=True,
                timeout=900,
            )
            if result.returncode != 0 or not made.exists():
                print(
                    f"no Spark class archive: the workload exited {result.returncode}; the tests run without it\n"
                    f"{result.stderr[-2000:]}",
                    file=sys.stderr,
                )
                return ""
            os.replace(made, archive)
    return f"-XX:SharedArchiveFile={archive} {QUIET}"


def _workload(root: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    from conftest import make_environment
    from lakeforge.session import build_spark

    spark = build_spark(make_environment(root, "archive"), "lakeforge-class-archive")
    spark.sql("CREATE SCHEMA IF NOT EXISTS archive")
    rows = spark.range(200).select(
        "id", (F.col("id") % 7).alias("k"), F.col("id").cast("string").alias("v"), F.current_timestamp().alias("t")
    )
    rows.write.format("delta").saveAsTable("archive.rows")
    spark.sql(
        "MERGE INTO archive.rows AS r USING (SELECT id, k + 1 AS k, v, t FROM archive.rows WHERE id < 50) AS u "
        "ON r.id = u.id WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    spark.sql("DESCRIBE HISTORY archive.rows").collect()
    spark.read.option("versionAsOf", 0).table("archive.rows").count()
    latest = Window.partitionBy("k").orderBy(F.col("t").desc(), "id")
    spark.table("archive.rows").withColumn("n", F.row_number().over(latest)).groupBy("k").agg(F.max("n")).collect()

    landing = root / "landing"
    landing.mkdir()
    (landing / "part-0.json").write_text('{"id": 1, "v": "a"}\nnot json\n')
    stream = (
        spark.readStream.schema("id LONG, v STRING, _corrupt_record STRING")
        .option("columnNameOfCorruptRecord", "_corrupt_record")
        .json(str(landing))
        .withColumn("_source_file", F.col("_metadata.file_path"))
    )
    query = (
        stream.writeStream.format("delta")
        .option("checkpointLocation", str(root / "checkpoint"))
        .trigger(availableNow=True)
        .toTable("archive.landed")
    )
    query.awaitTermination()

    data = spark.table("archive.rows").select((F.col("k") > 3).cast("double").alias("label"), "id", "k")
    features = VectorAssembler(inputCols=["id", "k"], outputCol="features")
    model = Pipeline(stages=[features, LogisticRegression(maxIter=5)]).fit(data)
    model.transform(data).select("probability").collect()
    # The JVM writes the archive as it exits: close its stdin (it exits on EOF) and wait for it.
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    jvm.stdin.close()
    jvm.wait(timeout=300)


if __name__ == "__main__":
    _workload(Path(sys.argv[1]))
