"""Landing-file generator: clean rows from a use case, the defects real feeds have, written as files.

Randomness is a hash of (seed, salt, row id), so output is the same for a seed whatever the
partitioning, and nothing is held in driver memory: tens of millions of rows are fine.
Each batch lands in its own folder, several files per source, as upstream systems drop them,
with a `_manifest.json` (ignored by Spark) counting the defects injected.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeforge import atomic
from lakeforge.config import Source, UseCase, resolve_callable
from lakeforge.errors import LakeforgeError

DEFECT_RATE = 0.004
DEFECTS = ("malformed", "wrong_type", "null_key", "out_of_range", "duplicate", "late_update")
FILES_PER_BATCH = 3


def unit_random(seed: int, salt: str, *columns: Column | str) -> Column:
    """A deterministic uniform number in [0, 1) from the seed, a salt and some columns."""
    hashed = F.xxhash64(F.lit(seed), F.lit(salt), *columns)
    return (F.abs(hashed % F.lit(1_000_000_007)) / F.lit(1_000_000_007.0)).cast("double")


def seconds(days: float) -> int:
    return int(days * 86400)


def timestamp_after(start: dt.datetime, offset_seconds: Column) -> Column:
    """A UTC timestamp `offset_seconds` after the naive UTC datetime `start`."""
    return F.timestamp_seconds(F.lit(int(start.replace(tzinfo=dt.UTC).timestamp())) + offset_seconds)


def read_manifest(landing: str, use_case: str, source: str) -> dict[str, int]:
    """The defect counts of every generated batch of a source, added up."""
    total: dict[str, int] = {}
    for path in sorted(Path(landing, use_case, source).glob("batch_*/_manifest.json")):
        for key, value in json.loads(path.read_text()).items():
            total[key] = total.get(key, 0) + value
    return total


def pick(values: list[str], u: Column) -> Column:
    """Pick one of `values` with a uniform number `u` in [0, 1)."""
    index = F.least(F.floor(u * len(values)).cast("int"), F.lit(len(values) - 1)) + 1
    return F.element_at(F.array(*[F.lit(v) for v in values]), index)


@dataclass(frozen=True)
class BatchSpec:
    """What a use case generator is asked for: batch 0 is history, later batches are new days; from batch
    `drift_from` on, the named drift `scenario` of the generator (its module's `SCENARIOS`) changes the data.
    `record_delay_days` shortens the world's label delay: each label is recorded up to that many days after
    its event instead of the generator's own delay (weeks for churn), so a short simulation sees labels."""

    rows: int
    seed: int
    batch: int
    scenario: str | None = None
    drift_from: int = 1
    record_delay_days: int | None = None

    def drifting(self, scenario: str) -> bool:
        return self.scenario == scenario and self.batch >= self.drift_from


def generator(use_case: UseCase) -> str:
    """The use case's demo-data generator, or a clear error for a use case of real files."""
    if use_case.generator is None:
        raise LakeforgeError(
            f"use case '{use_case.name}' names no generator: generate-data and simulate make demo data only for a "
            "use case with `generator: package.module:function`; land real files under the landing folder instead"
        )
    return use_case.generator


def scenarios(use_case: UseCase) -> dict[str, str]:
    """The drift scenarios a use case's generator offers: name to what changes."""
    module = importlib.import_module(generator(use_case).partition(":")[0])
    return dict(getattr(module, "SCENARIOS", {}))


def check_scenario(use_case: UseCase, scenario: str | None) -> None:
    """Refuse a scenario the use case's generator does not offer, before any Spark work."""
    if scenario is None:
        return
    offered = scenarios(use_case)
    if scenario not in offered:
        known = ", ".join(sorted(offered)) or "none"
        raise LakeforgeError(f"use case '{use_case.name}' has no drift scenario '{scenario}' (offered: {known})")


def _out_of_range_value(source: Source) -> tuple[str, str] | None:
    for expectation in source.expectations:
        if expectation.type == "expect_column_values_to_be_between" and expectation.column:
            high = expectation.kwargs.get("max_value")
            if high is not None:
                return expectation.column, str(high * 10 + 1)
    return None


def inject_defects(df: DataFrame, source: Source, seed: int, salt: str) -> DataFrame:
    """Return all columns as strings plus `_defect`, with a few rows damaged the way feeds damage them.

    `malformed` rows are truncated later, when lines are built; every other defect is made here.
    """
    typed_columns = sorted(
        (c for c, t in source.columns.items() if t != "string" and c not in source.key),
        key=lambda c: source.columns[c] not in ("int", "bigint", "double"),
    )
    wrong_column = typed_columns[0] if typed_columns else None
    out_of_range = _out_of_range_value(source)
    # Only defects this source can carry: no wrong type without a typed column, no range without a range.
    possible = {"wrong_type": wrong_column is not None, "out_of_range": out_of_range is not None}
    kinds = [k for k in DEFECTS if k != "late_update" and possible.get(k, True)]
    u = unit_random(seed, f"defect:{salt}", F.col("_row"))
    by_rate = F.lit(None).cast("string")
    for position, kind in reversed(list(enumerate(kinds))):
        by_rate = F.when(u < DEFECT_RATE * (position + 1), F.lit(kind)).otherwise(by_rate)
    # The first rows carry one defect of each kind, so even a tiny batch has them all.
    first_rows = F.element_at(F.array(*[F.lit(k) for k in kinds]), F.col("_row").cast("int") + 1)
    defect = F.when(F.col("_row") < len(kinds), first_rows).otherwise(by_rate)
    key = source.key[0]
    out = df.withColumn("_defect", defect)
    projected = []
    for column in source.columns:
        value = F.col(column).cast("string")
        if column == key:
            value = F.when(F.col("_defect") == "null_key", F.lit(None)).otherwise(value)
        if column == wrong_column:
            value = F.when(F.col("_defect") == "wrong_type", F.lit("not-a-number")).otherwise(value)
        if out_of_range and column == out_of_range[0]:
            value = F.when(F.col("_defect") == "out_of_range", F.lit(out_of_range[1])).otherwise(value)
        projected.append(value.alias(column))
    new_columns = [F.col(c).cast("string") for c in df.columns if c not in source.columns and not c.startswith("_")]
    late = [F.col("_late")] if "_late" in df.columns else [F.lit(False).alias("_late")]
    out = out.select("_row", "_defect", *late, *projected, *new_columns)
    copies = out.where(F.col("_defect") == "duplicate").withColumn("_defect", F.lit("duplicate_copy"))
    return out.unionByName(copies)


def _json_line(df: DataFrame, columns: list[str], numeric: set[str]) -> Column:
    pieces = []
    for column in columns:
        raw = F.col(column)
        as_json = F.when(raw.isNull(), F.lit("null"))
        if column in numeric:
            looks_numeric = raw.rlike(r"^-?[0-9]+(\.[0-9]+)?$")
            as_json = as_json.when(looks_numeric, raw)
        as_json = as_json.otherwise(F.to_json(F.array(raw)).substr(F.lit(2), F.length(F.to_json(F.array(raw))) - 2))
        pieces.append(F.concat(F.lit(f'"{column}":'), as_json))
    return F.concat(F.lit("{"), F.concat_ws(",", *pieces), F.lit("}"))


def _csv_line(columns: list[str]) -> Column:
    return F.concat_ws(",", *[F.coalesce(F.col(c), F.lit("")) for c in columns])


def to_lines(df: DataFrame, source: Source) -> DataFrame:
    """Render rows as raw text lines (JSON or CSV), truncating the `malformed` ones."""
    columns = [c for c in df.columns if not c.startswith("_")]
    if source.format == "json":
        numeric = {c for c, t in source.columns.items() if t in ("int", "bigint", "double")}
        line = _json_line(df, columns, numeric)
    else:
        line = _csv_line(columns)
    truncated = line.substr(F.lit(1), F.greatest(F.lit(1), (F.length(line) / 3).cast("int")))
    line = F.when(F.col("_defect") == "malformed", truncated).otherwise(line)
    return df.select(line.alias("value"), "_row")


def write_lines(lines: DataFrame, source: Source, header: str, folder: str, files: int) -> None:
    """Write raw lines as `files` files; CSV files each start with their header."""
    ordered = lines.repartitionByRange(files, "_row").sortWithinPartitions("_row").select("value")
    if source.format == "csv":
        # A single column named after the header line, written with a separator that never occurs,
        # gives every CSV part file its own header without quoting the commas inside the lines.
        (
            ordered.withColumnRenamed("value", header)
            .write.mode("overwrite")
            .option("header", "true")
            .option("sep", "\u0001")
            .option("quote", "")
            .option("escape", "")
            .csv(folder)
        )
    else:
        ordered.write.mode("overwrite").text(folder)


def generate_batch(spark: SparkSession, use_case: UseCase, landing: str, spec: BatchSpec) -> dict[str, dict[str, int]]:
    """Generate one batch of landing files for every source; return the defect counts per source."""
    check_scenario(use_case, spec.scenario)
    generate = resolve_callable(generator(use_case))
    clean = generate(spark, spec)
    manifest: dict[str, dict[str, int]] = {}
    for name, source in use_case.sources.items():
        folder = f"{landing}/{use_case.name}/{name}/batch_{spec.batch:05d}"
        rows = inject_defects(clean[name], source, spec.seed + spec.batch, name).persist()
        columns = [c for c in rows.columns if not c.startswith("_")]
        write_lines(to_lines(rows, source), source, ",".join(columns), folder, FILES_PER_BATCH)
        counts = rows.groupBy("_defect", "_late").count().collect()
        manifest[name] = {"rows": sum(r["count"] for r in counts)}
        for kind in DEFECTS:
            manifest[name][kind] = sum(r["count"] for r in counts if r["_defect"] == kind)
        manifest[name]["duplicate_copy"] = sum(r["count"] for r in counts if r["_defect"] == "duplicate_copy")
        manifest[name]["late_update"] = sum(r["count"] for r in counts if r["_late"] and r["_defect"] is None)
        rows.unpersist()
        atomic.write_text(Path(folder, "_manifest.json"), json.dumps(manifest[name], indent=2))
    return manifest
