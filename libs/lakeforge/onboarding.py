"""A starter config for someone's own files: `lakeforge init-use-case NAME --from DIR`.

`DIR` holds one folder per source. For each, the files are found (CSV, JSON lines, gzipped or not),
their landing pattern is written relative to the source folder, and a sample is read by Spark to infer
columns and types. Keys and event times are guessed where the sample supports it, every guess is
marked in a comment, and each source gets the default expectation (its keys not null). What cannot be
guessed (labels, features, training) stays commented out for the user to complete.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeforge import atomic
from lakeforge.config import IDENTIFIER_PATTERN, check_identifier
from lakeforge.errors import LakeforgeError

log = logging.getLogger(__name__)

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".ndjson": "json"}
COMPRESSIONS = (".gz", ".bz2")
SAMPLE_FILES = 20
SAMPLE_ROWS = 10_000
HEAD_BYTES = 1 << 16
# What a feed that is not UTF-8 most likely is: Windows' code page (ISO-8859-1 but for 0x80-0x9F).
OTHER_ENCODING = "windows-1252"
TIME_NAMES = re.compile(r"(^|_)(ts|time|timestamp|at|date|datetime|day)$|_at$|_time$", re.IGNORECASE)


class OnboardingError(LakeforgeError):
    """The folder cannot become a use case as it is (no sources, mixed formats, an unusable column name)."""


@dataclass
class SourceGuess:
    """What the sample says about one source, and the comments to write beside it."""

    name: str
    format: str
    files: str
    columns: dict[str, str]
    key: list[str]
    event_time: str | None
    notes: list[str] = field(default_factory=list)
    multiline: bool = False
    encoding: str = "utf-8"


def _format(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def data_files(folder: Path) -> list[Path]:
    """The files of a source folder, hidden and underscored ones (`_SUCCESS`, `.crc`) left out."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and not any(part.startswith((".", "_")) for part in path.relative_to(folder).parts)
    )


def landing_pattern(folder: Path, files: list[Path]) -> str:
    """A Hadoop glob, relative to the source folder, matching exactly these files' depths and suffixes."""
    patterns = sorted(
        {
            "/".join(["*"] * (len(path.relative_to(folder).parts) - 1) + ["*" + "".join(path.suffixes).lower()])
            for path in files
        }
    )
    return patterns[0] if len(patterns) == 1 else "{" + ",".join(patterns) + "}"


SPARK_TO_CONFIG = {
    T.StringType: "string",
    T.IntegerType: "int",
    T.ShortType: "int",
    T.ByteType: "int",
    T.LongType: "bigint",
    T.DoubleType: "double",
    T.FloatType: "double",
    T.DecimalType: "double",
    T.BooleanType: "boolean",
    T.DateType: "date",
    T.TimestampType: "timestamp",
    T.TimestampNTZType: "timestamp",
}


def config_type(data_type: T.DataType) -> str:
    """The config type of an inferred Spark type; nested JSON (objects, arrays) is `json`, kept as its JSON text."""
    if isinstance(data_type, T.StructType | T.ArrayType | T.MapType):
        return "json"
    return next((name for kind, name in SPARK_TO_CONFIG.items() if isinstance(data_type, kind)), "string")


def head(path: Path) -> bytes:
    """The first bytes of a file, decompressed when it is gzipped or bzipped."""
    suffix = path.suffix.lower()
    opener = gzip.open if suffix == ".gz" else bz2.open if suffix == ".bz2" else open
    with opener(path, "rb") as file:
        return file.read(HEAD_BYTES)


def is_utf8(data: bytes) -> bool:
    """Whether `data` (a file's first bytes: the last character may be cut) is valid UTF-8."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def is_json_document(data: bytes) -> bool:
    """Whether a JSON file is one document (an array, or an object over several lines), not JSON lines."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return True
    first_line = text.split("\n", 1)[0].strip()
    try:
        return not isinstance(json.loads(first_line), dict)
    except ValueError:
        return text.startswith("{")


def read_sample(spark: SparkSession, guess: SourceGuess, files: list[Path]) -> DataFrame:
    paths = [str(path) for path in files[:SAMPLE_FILES]]
    reader = spark.read.option("mode", "DROPMALFORMED").option("multiLine", str(guess.multiline).lower())
    # Spark 4's readers decode no Windows code page: its printable superset is read for the sample's types.
    reader = reader.option("encoding", "utf-8" if guess.encoding == "utf-8" else "iso-8859-1")
    if guess.format == "csv":
        return reader.option("header", "true").option("inferSchema", "true").csv(paths).limit(SAMPLE_ROWS)
    return reader.option("inferTimestamp", "true").json(paths).limit(SAMPLE_ROWS)


def guess_event_time(columns: dict[str, str]) -> str | None:
    """The first timestamp column, preferring one named like a time; else a date column named like one."""
    for wanted in ("timestamp", "date"):
        typed = [name for name, kind in columns.items() if kind == wanted]
        named = [name for name in typed if TIME_NAMES.search(name)]
        if named or typed:
            return (named or typed)[0]
    return None


def _id_like(name: str, source: str) -> bool:
    singular = source[:-1] if source.endswith("s") else source
    lowered = name.lower()
    return lowered in ("id", "key", f"{singular}_id") or lowered.endswith(("_id", "_key", "_code", "_uuid"))


def guess_key(sample: DataFrame, source: str, columns: dict[str, str], event_time: str | None) -> list[str]:
    """An id-like column (`id`, `<source>_id`, `*_id`, `*_key`, `*_code`) unique and never null in the sample;
    else one with the event time (a reading per station and hour); else nothing (the user chooses)."""
    ids = [name for name, kind in columns.items() if kind in ("string", "int", "bigint") and _id_like(name, source)]
    candidates = [[name] for name in ids] + ([[name, event_time] for name in ids] if event_time else [])
    if not candidates:
        return []
    checks = [F.count("*").alias("rows")]
    checks += [F.count_distinct(*[F.col(f"`{c}`") for c in key]).alias(f"k{i}") for i, key in enumerate(candidates)]
    checks += [F.count_if(F.col(f"`{name}`").isNull()).alias(f"n{i}") for i, name in enumerate(ids)]
    measured = sample.agg(*checks).first()
    no_nulls = {name for i, name in enumerate(ids) if measured[f"n{i}"] == 0}
    for i, key in enumerate(candidates):
        if measured[f"k{i}"] == measured["rows"] and all(c in no_nulls or c == event_time for c in key):
            return key
    return []


def guess_source(spark: SparkSession, name: str, folder: Path) -> SourceGuess:
    files = data_files(folder)
    if not files:
        raise OnboardingError(f"{folder} holds no data file")
    formats = {path: _format(path) for path in files}
    unknown = [str(path) for path, kind in formats.items() if kind is None]
    if unknown:
        raise OnboardingError(f"{folder}: files neither CSV nor JSON lines ({', '.join(unknown[:3])})")
    kinds = set(formats.values())
    if len(kinds) > 1:
        raise OnboardingError(f"{folder} mixes {' and '.join(sorted(kinds))} files: one format per source folder")
    source_format = kinds.pop()
    layout = SourceGuess(name, source_format, landing_pattern(folder, files), {}, [], None)
    heads = [head(path) for path in files[:SAMPLE_FILES]]
    if not all(is_utf8(data) for data in heads):
        layout.encoding = OTHER_ENCODING
        layout.notes.append(f"GUESS: not valid UTF-8, read as {layout.encoding}; set the feed's own `encoding`")
    if source_format == "json" and is_json_document(heads[0]):
        layout.multiline = True
        layout.notes.append("GUESS: each file is one JSON document (an array of objects, or one object)")
    sample = read_sample(spark, layout, files).persist()
    bad = [c for c in sample.columns if not IDENTIFIER_PATTERN.match(c) or c.startswith("_")]
    if bad:
        raise OnboardingError(
            f"{folder}: column names {bad} are not plain identifiers (letters, digits, underscore, not starting with "
            "a digit or '_'); rename them in the files' header"
        )
    columns = {field.name: config_type(field.dataType) for field in sample.schema.fields}
    event_time = guess_event_time(columns)
    key = guess_key(sample, name, columns, event_time)
    rows = sample.count()
    sample.unpersist()
    if not columns:
        raise OnboardingError(f"{folder}: no row of the sample could be read as {source_format}")
    notes = [f"{len(files)} file(s); {rows} rows sampled from {min(len(files), SAMPLE_FILES)}", *layout.notes]
    nested = [f.name for f in sample.schema.fields if isinstance(f.dataType, T.StructType | T.ArrayType | T.MapType)]
    if nested:
        notes.append(f"nested JSON, declared as `json` (kept as its JSON text): {', '.join(nested)}")
    layout.columns, layout.key, layout.event_time, layout.notes = columns, key, event_time, notes
    return layout


def _scalar(value: str) -> str:
    """A YAML scalar that reads back as this string (`*.csv`, `on`, `null` need quotes)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip().removesuffix("...").strip()


def render(name: str, guesses: list[SourceGuess]) -> str:
    """The use-case YAML, with a comment on every guess."""
    lines = [
        f"# Written by `lakeforge init-use-case {name}`: check each guess (marked GUESS), then complete the",
        "# commented sections. `lakeforge run ingest silver gold --use-case NAME` runs the medallion on it.",
        f"name: {name}",
        f"description: {name} (from init-use-case)",
        "sources:",
    ]
    for guess in guesses:
        lines += [f"  # {note}" for note in guess.notes]
        lines += [f"  {guess.name}:", f"    format: {guess.format}"]
        lines.append(f"    files: {_scalar(guess.files)}")
        if guess.multiline:
            lines.append("    multiline: true")
        if guess.encoding != "utf-8":
            lines.append(f"    encoding: {guess.encoding}")
        if guess.key:
            lines.append(f"    key: [{', '.join(guess.key)}]  # GUESS: unique and never null in the sample")
        else:
            first = next(iter(guess.columns))
            lines.append(f"    key: [{first}]  # TODO: no column is unique in the sample; name the columns of a row")
        if guess.event_time:
            lines.append(f"    event_time: {guess.event_time}  # GUESS: the latest row per key wins by it")
        else:
            lines.append("    # No time column: a reference table, the latest ingested row per key wins.")
        lines.append("    columns:")
        lines += [f"      {_scalar(column)}: {kind}" for column, kind in guess.columns.items()]
        key = guess.key or [next(iter(guess.columns))]
        lines.append("    expectations:")
        for column in key:
            lines += [
                "      - type: expect_column_values_to_not_be_null",
                f"        column: {column}",
                "        action: quarantine",
            ]
    lines += [
        "",
        "# gold:  # analyst tables, in Spark SQL over silver tables (or `transform: package.module:function`)",
        "#   daily_counts:",
        "#     inputs: [<source>]",
        "#     sql: SELECT to_date(<event_time>) AS day, count(*) AS rows FROM <source> GROUP BY 1",
        "# features, training, scoring, monitoring: see the README's 'Onboarding a data set'.",
    ]
    return "\n".join(lines) + "\n"


def init_use_case(
    spark: SparkSession, name: str, source_dir: Path, conf: Path, landing: str | None = None, force: bool = False
) -> Path:
    """Write `conf/usecases/<name>.yml` from the folders under `source_dir`; with `landing`, copy the files
    there too (`<landing>/<name>/<source>/`, as bronze reads them). Returns the config's path."""
    check_identifier(name)
    target = conf / "usecases" / f"{name}.yml"
    if target.exists() and not force:
        raise OnboardingError(f"{target} exists: pass --force to replace it")
    if not source_dir.is_dir():
        raise OnboardingError(f"{source_dir} is not a folder")
    folders = sorted(path for path in source_dir.iterdir() if path.is_dir() and not path.name.startswith((".", "_")))
    if not folders:
        raise OnboardingError(f"{source_dir} has no source folders: put each source's files in a folder of its own")
    invalid = [folder.name for folder in folders if not IDENTIFIER_PATTERN.match(folder.name)]
    if invalid:
        raise OnboardingError(f"source folder names {invalid} are not plain identifiers: rename them")
    guesses = [guess_source(spark, folder.name, folder) for folder in folders]
    atomic.write_text(target, render(name, guesses))
    if landing is not None:
        for folder in folders:
            shutil.copytree(folder, Path(landing) / name / folder.name, dirs_exist_ok=True)
    for guess in guesses:
        log.info(
            "%s: %s files %s, key %s, event time %s, %d columns",
            guess.name,
            guess.format,
            guess.files,
            guess.key or "none found",
            guess.event_time or "none (reference table)",
            len(guess.columns),
        )
    return target
