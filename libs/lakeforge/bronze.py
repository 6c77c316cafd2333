"""Bronze: land raw files in Delta exactly once, losing nothing and altering nothing in silence.

Every value stays a string as it arrived; typing is silver's job. A line that cannot be parsed is
kept whole in `_corrupt_record`. A key that appears in a later JSON batch becomes a new bronze
column (schema evolution) instead of a crash. A key that cannot be a column (not a plain identifier,
starting with `_` like lakeforge's own columns, or differing from a column only in case) is kept with
its value in `_rescued_data`, a JSON object per line, as Databricks Auto Loader does.

What is read, and what became of every file, is `landing`'s: a file that cannot be read (corrupt
compression, a CSV header that differs from the declared columns) is rejected with its reason and the
rest of its batch lands. A line of a UTF-8 source that is not valid UTF-8 lands with its bytes as they
arrived in `_original_bytes` (base64; silver quarantines it as `invalid_encoding`), and a JSON object or
array where a declared column expected a value is named in `_nested_columns` (silver: `cast_failed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from lakeforge import landing, tables
from lakeforge.config import IDENTIFIER_PATTERN, Settings, Source
from lakeforge.errors import LandingIncomplete
from lakeforge.landing import LANDED, PLANNED, REJECTED, REWRITTEN, LandingFile, LandingPlan, Recorded

log = logging.getLogger(__name__)

CORRUPT = "_corrupt_record"
RESCUED = "_rescued_data"
ORIGINAL_BYTES = "_original_bytes"
NESTED = "_nested_columns"
METADATA_COLUMNS = ("_record_id", "_source_file", "_ingested_at", CORRUPT)
BRONZE_PROPERTIES = {"delta.enableChangeDataFeed": "true"}
# The key of `_original_bytes` that holds a whole line (a CSV field's bytes are under its column's name).
WHOLE_LINE = "_line"
# Files are decoded by lakeforge, not by the readers: a CSV is read as ISO-8859-1, which maps every byte to
# one character and back, then each field's bytes as they arrived are checked as UTF-8 (the CSV reader would
# replace what is not) or decoded as the source's code page. Spark 4 decodes no Windows code page, and
# windows-1252 differs from ISO-8859-1 only in 0x80-0x9F: those characters are translated.
BYTE_FOR_BYTE = "ISO-8859-1"
_C1 = [bytes([byte]) for byte in range(0x80, 0xA0)]
_WINDOWS_1252 = {raw.decode("latin-1"): raw.decode("cp1252") for raw in _C1 if raw.decode("cp1252", "ignore")}
NOT_UTF8 = "invalid_encoding: not valid UTF-8 (declare the source's `encoding` if it is another)"
ORIGINAL_BYTES_TYPE = T.MapType(T.StringType(), T.StringType())


def read_as(source: Source) -> str:
    """How a source's files are read, recorded with every file: a rejected file is tried again when it changes."""
    return f"{source.format} {'multiline' if source.multiline else 'lines'} {source.encoding}"


def raw_schema(source: Source) -> T.StructType:
    """The schema files are read with: declared columns as strings (+ the corrupt-record column for CSV)."""
    if source.format == "json":
        return T.StructType([T.StructField("value", T.StringType())])
    fields = [T.StructField(name, T.StringType()) for name in source.columns]
    return T.StructType([*fields, T.StructField(CORRUPT, T.StringType())])


def reader_options(source: Source) -> dict[str, str]:
    if source.format == "json":
        return {"wholetext": "true"} if source.multiline else {}
    return {
        "header": "true",
        "mode": "PERMISSIVE",
        "columnNameOfCorruptRecord": CORRUPT,
        # The header must match the declared columns: a reordered or widened CSV is rejected instead of
        # having its values read into the wrong columns.
        "enforceSchema": "false",
        "multiLine": str(source.multiline).lower(),
        "encoding": BYTE_FOR_BYTE,
    }


def _base64_bytes(text: Column) -> Column:
    return F.base64(text.cast("binary"))


def from_single_byte(text: Column, encoding: str) -> Column:
    """Text read byte for byte as ISO-8859-1, as the single-byte code page `encoding` reads it."""
    if encoding == "windows-1252":
        return F.translate(text, "".join(_WINDOWS_1252), "".join(_WINDOWS_1252.values()))
    return text


def _valid_text(text: Column, valid: Column) -> Column:
    """`text`, with what is not valid UTF-8 replaced by U+FFFD (so no table holds invalid UTF-8)."""
    return F.when(valid, text).otherwise(F.make_valid_utf8(text))


def utf8_csv_fields(rows: DataFrame, columns: list[str]) -> DataFrame:
    """Turn fields read byte for byte back into the UTF-8 text they are; the bytes of every field that is not
    valid UTF-8 go to `_original_bytes` (column -> base64; the whole line under `_line` for a malformed row)."""
    fields = [*columns, CORRUPT]
    as_bytes = {name: F.encode(F.col(name), BYTE_FOR_BYTE) for name in fields}
    as_text = {name: as_bytes[name].cast("string") for name in fields}
    valid = {name: F.coalesce(F.is_valid_utf8(as_text[name]), F.lit(True)) for name in fields}
    entries = [
        F.when(~valid[name], F.struct(F.lit(WHOLE_LINE if name == CORRUPT else name), F.base64(as_bytes[name])))
        for name in fields
    ]
    original = F.map_from_entries(F.filter(F.array(*entries), lambda entry: entry.isNotNull()))
    return rows.select(
        *[_valid_text(as_text[name], valid[name]).alias(name) for name in fields],
        F.when(F.size(original) > 0, original).alias(ORIGINAL_BYTES),
        "_source_file",
    )


def json_values(raw: DataFrame, source: Source) -> DataFrame:
    """One row per JSON value to parse (`value`): each line, or each element of a file that is one document
    (an array of objects, or one object). A UTF-8 line that is not valid UTF-8 keeps its bytes; a document
    that is not was rejected before it was read (`not_utf8_documents`): its bytes are the whole file."""
    value = F.col("value")
    original = F.lit(None).cast(ORIGINAL_BYTES_TYPE)
    if source.encoding != "utf-8":
        value = from_single_byte(F.decode(value.cast("binary"), BYTE_FOR_BYTE), source.encoding)
    else:
        valid = F.is_valid_utf8(value)
        if not source.multiline:
            original = F.when(~valid, F.create_map(F.lit(WHOLE_LINE), _base64_bytes(value)))
        value = _valid_text(value, valid)
    rows = raw.select(value.alias("value"), original.alias(ORIGINAL_BYTES), "_source_file")
    if not source.multiline:
        return rows
    elements = F.from_json("value", T.ArrayType(T.StringType()))
    documents = rows.where(F.trim("value") != "")
    return documents.select(
        F.explode(F.coalesce(elements, F.array("value"))).alias("value"), ORIGINAL_BYTES, "_source_file"
    )


def json_keys(lines: DataFrame) -> list[str]:
    """Every top-level key present in a batch of JSON lines (a small aggregate, not a collect of rows)."""
    keys = lines.select(F.explode(F.json_object_keys("value")).alias("key")).distinct().collect()
    return sorted(row["key"] for row in keys)


def split_new_keys(keys: list[str], columns: list[str]) -> tuple[list[str], list[str]]:
    """Split the keys of a batch that are not yet columns into new columns and keys to rescue.

    A key becomes a column if it is a plain identifier, does not start with `_` (kept for lakeforge's
    bookkeeping columns), and does not equal another column but for case (Spark and Delta resolve
    column names without case). Every other key is rescued.
    """
    taken = {c.lower() for c in columns}
    new_columns: list[str] = []
    rescued: list[str] = []
    for key in keys:
        if key in columns:
            continue
        if IDENTIFIER_PATTERN.match(key) and not key.startswith("_") and key.lower() not in taken:
            new_columns.append(key)
            taken.add(key.lower())
        else:
            rescued.append(key)
    return new_columns, rescued


def nested_columns(columns: list[str]) -> Column:
    """The columns whose value in the line is a JSON object or array (`from_json` hands those over as JSON text,
    so only a value starting with `{` or `[` is parsed again, as a VARIANT, to tell an object from a string)."""
    document = F.try_parse_json("value")
    flags = []
    for column in columns:
        text = F.col("_json").getField(column)
        kind = F.schema_of_variant(F.variant_get(document, f"$['{column}']", "variant"))
        looks_nested = text.startswith("{") | text.startswith("[")
        flags.append(F.when(looks_nested & kind.rlike("^(OBJECT|ARRAY)"), F.lit(column)))
    found = F.filter(F.array(*flags), lambda name: name.isNotNull())
    return F.when(F.size(found) > 0, found)


def parse_json_lines(lines: DataFrame, columns: list[str], rescued_keys: Sequence[str] = ()) -> DataFrame:
    """Split JSON lines into string columns; a line that is not a JSON object keeps its text in `_corrupt_record`.

    The values of `rescued_keys` go to `_rescued_data` as one JSON object per line (null when the line
    has none of them). Only a batch with such keys pays for the second parse this takes. `_nested_columns`
    names the columns that hold an object or array; `_original_bytes` is passed through when present.
    """
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*columns, CORRUPT]])
    parsed = F.from_json("value", schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    malformed = F.col("_json").isNull() | F.col(f"_json.{CORRUPT}").isNotNull()
    if rescued_keys:
        every_key = F.from_json("value", T.MapType(T.StringType(), T.StringType()))
        rescued_values = F.map_filter(every_key, lambda key, _value: key.isin(list(rescued_keys)))
        rescued = F.when(~malformed & (F.size(rescued_values) > 0), F.to_json(rescued_values))
    else:
        rescued = F.lit(None).cast("string")
    passed_through = [ORIGINAL_BYTES] if ORIGINAL_BYTES in lines.columns else []
    return lines.select(parsed.alias("_json"), "value", "_source_file", *passed_through).select(
        *[F.when(~malformed, F.col("_json").getField(c)).alias(c) for c in columns],
        F.when(malformed, F.col("value")).alias(CORRUPT),
        rescued.alias(RESCUED),
        F.when(~malformed, nested_columns(columns)).alias(NESTED),
        *passed_through,
        "_source_file",
    )


def add_ingest_metadata(rows: DataFrame) -> DataFrame:
    """Stamp each row with a stable id (its file plus its position in the batch) and the time it was ingested.

    The id is the same when a batch is replayed after a crash: same files, same partitions.
    """
    row_id = F.concat(F.col("_source_file"), F.lit("#"), F.monotonically_increasing_id().cast("string"))
    return rows.withColumn("_record_id", row_id).withColumn("_ingested_at", F.current_timestamp())


def to_bronze_rows(batch: DataFrame, source: Source, known_columns: list[str]) -> DataFrame:
    """Turn the rows of a batch of files, as read with `raw_schema`, into bronze rows, keeping columns that
    were not declared.

    A JSON batch is read twice, once for its keys and once for its rows: re-reading text is cheaper
    than caching it.
    """
    if source.format == "json":
        values = json_values(batch, source)
        columns = list(source.columns) + [c for c in known_columns if c not in source.columns]
        new_columns, rescued_keys = split_new_keys(json_keys(values), columns)
        if rescued_keys:
            log.warning("keys kept in %s, as they cannot be columns: %s", RESCUED, ", ".join(rescued_keys))
        rows = parse_json_lines(values, columns + new_columns, rescued_keys)
    elif source.encoding == "utf-8":
        rows = utf8_csv_fields(batch, list(source.columns))
    else:
        decoded = [from_single_byte(F.col(c), source.encoding).alias(c) for c in [*source.columns, CORRUPT]]
        rows = batch.select(*decoded, F.lit(None).cast(ORIGINAL_BYTES_TYPE).alias(ORIGINAL_BYTES), "_source_file")
    return add_ingest_metadata(rows)


def read_files(spark: SparkSession, source: Source, files: Sequence[LandingFile]) -> DataFrame:
    """The rows of these files as read with `raw_schema`, each with its `_source_file`."""
    file_format = "csv" if source.format == "csv" else "text"
    return tables.read_files(
        spark, file_format, [file.read_path for file in files], raw_schema(source), reader_options(source)
    )


def not_utf8_documents(spark: SparkSession, source: Source, files: Sequence[LandingFile]) -> set[str]:
    """The files of a one-document-per-file UTF-8 JSON source that are not valid UTF-8 (their rows cannot
    keep their own bytes: the document is split only once decoded)."""
    if not (source.format == "json" and source.multiline and source.encoding == "utf-8"):
        return set()
    documents = read_files(spark, source, files)
    return {row[0] for row in documents.where(~F.is_valid_utf8("value")).select("_source_file").collect()}


def java_error_text(error: BaseException) -> str:
    """The message of a Spark error with every Java cause, a `Caused by:` line each (no stack frames)."""
    throwable = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    if throwable is None:
        return str(error)
    lines = [str(error).splitlines()[0] if str(error) else ""]
    while throwable is not None:
        lines.append(f"Caused by: {throwable.toString()}")
        throwable = throwable.getCause()
    return "\n".join(lines)


@dataclass
class IngestReport:
    """What one ingest did with a source's files, for the log and for `strict`."""

    source: str
    strict: bool
    pattern: str
    files_landed: int = 0
    rows_landed: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)

    def problems(self) -> str | None:
        """What a strict source may not leave unread, in a few words (None when all was read)."""
        parts = [f"{len(self.rejected)} file(s) rejected"] if self.rejected else []
        if self.unmatched:
            parts.append(f"{len(self.unmatched)} file(s) no pattern matches ('{self.pattern}')")
        return ", ".join(parts) or None


class _Ingest:
    """One source's ingest: list its files, plan, record every event in the manifest, land the batch."""

    def __init__(self, spark: SparkSession, settings: Settings, name: str) -> None:
        self.spark, self.name = spark, name
        self.source = settings.use_case.sources[name]
        self.table = settings.table("bronze", name)
        self.manifest = settings.table("ops", landing.MANIFEST_TABLE)
        self.folder = f"{settings.env.path('landing')}/{settings.use_case.name}/{name}"
        self.read_as = read_as(self.source)
        self.report = IngestReport(name, self.source.strict, self.source.files)

    def listing(self) -> list[LandingFile]:
        files = []
        for row in tables.list_files(self.spark, self.folder):
            relative = landing.relative_path(row["path"], self.folder)
            if relative is not None:
                files.append(LandingFile(row["file_path"], row["path"], relative, row["size"], row["modified_ms"]))
        return files

    def recorded(self, listing: list[LandingFile]) -> list[Recorded]:
        """The manifest's events for this source, oldest first. A bronze table older than the manifest (landed by
        the file stream lakeforge used before) seeds it: every file its rows came from counts as landed."""
        events = []
        if tables.table_exists(self.spark, self.manifest):
            rows = (
                self.spark.read.table(self.manifest)
                .where(F.col("bronze_table") == self.table)
                .orderBy("recorded_at")
                .select("path", "size", F.unix_millis("modification_time"), "batch_id", "status", "reason", "read_as")
                .collect()
            )
            events = [Recorded(*row) for row in rows]
        if events or not tables.table_exists(self.spark, self.table):
            return events
        listed = {file.path: file for file in listing}
        sources = self.spark.read.table(self.table).select("_source_file").distinct()
        landed_before = [row[0] for row in sources.collect()]
        seeded = [
            Recorded(path, listed[path].size, listed[path].modified_ms, -1, LANDED, None, self.read_as)
            if path in listed
            else Recorded(path, 0, 0, -1, LANDED, None, self.read_as)
            for path in landed_before
        ]
        self.record(seeded)
        return seeded

    def record(self, events: list[Recorded]) -> None:
        if not events:
            return
        rows = self.spark.createDataFrame(
            [(self.table, e.path, e.size, e.modified_ms, e.batch_id, e.status, e.reason, e.read_as) for e in events],
            "bronze_table string, path string, size bigint, modified_ms bigint, batch_id bigint, status string,"
            " reason string, read_as string",
        )
        rows = rows.select(
            "bronze_table",
            "path",
            "size",
            F.timestamp_millis("modified_ms").alias("modification_time"),
            "batch_id",
            "status",
            "reason",
            "read_as",
            F.current_timestamp().alias("recorded_at"),
        )
        tables.append(rows, self.manifest)

    def event(self, file: LandingFile, batch_id: int, status: str, reason: str | None = None) -> Recorded:
        return Recorded(file.path, file.size, file.modified_ms, batch_id, status, reason, self.read_as)

    def reject(self, file: LandingFile, batch_id: int, reason: str) -> None:
        """Record a file that cannot be read before the batch goes on without it (a replay then skips it too)."""
        self.record([self.event(file, batch_id, REJECTED, reason)])
        self.report.rejected[file.path] = reason
        log.warning("bronze %s: rejected %s: %s", self.name, file.path, reason)

    def land(self, plan: LandingPlan) -> None:
        """Append the batch's rows to bronze once (a replayed batch id is skipped by Delta), dropping any file
        Spark cannot read and trying the rest again; then record every file that landed."""
        files = {file.path: file for file in plan.to_read}
        for path in not_utf8_documents(self.spark, self.source, list(files.values())):
            self.reject(files.pop(path), plan.batch_id, NOT_UTF8)
        while files:
            try:
                known = (
                    [c for c in self.spark.read.table(self.table).columns if not c.startswith("_")]
                    if tables.table_exists(self.spark, self.table)
                    else []
                )
                rows = to_bronze_rows(read_files(self.spark, self.source, list(files.values())), self.source, known)
                version = tables.table_version(self.spark, self.table)
                app_id = f"landing:{self.table}"
                tables.append_idempotent(rows, self.table, app_id, plan.batch_id, BRONZE_PROPERTIES)
                break
            except Exception as error:  # noqa: BLE001 - only an error naming one of the files is handled
                text = java_error_text(error)
                path = landing.unreadable_file(text, files)
                if path is None:
                    raise
                self.reject(files.pop(path), plan.batch_id, landing.rejection_reason(text))
        if not files:
            return
        if tables.table_version(self.spark, self.table) != version:
            self.report.rows_landed += tables.last_commit_rows(self.spark, self.table) or 0
        self.report.files_landed += len(files)
        self.record([self.event(file, plan.batch_id, LANDED) for file in files.values()])

    def run(self) -> IngestReport:
        while True:
            listing = self.listing()
            plan = landing.plan_batch(listing, self.recorded(listing), self.source.files, self.read_as)
            self.note(plan)
            if plan.to_read:
                if not plan.replay:
                    self.record([self.event(file, plan.batch_id, PLANNED) for file in plan.to_read])
                self.land(plan)
            if not plan.replay:
                return self.report

    def note(self, plan: LandingPlan) -> None:
        """Say what this run does not read, a line per file, and record what is new about it."""
        for file in plan.unmatched:
            log.warning("bronze %s: not read, no pattern matches it (%s): %s", self.name, self.source.files, file.path)
            self.report.unmatched.append(file.path)
        for event in plan.still_rejected:
            still = "bronze %s: still rejected, unchanged since batch %d: %s: %s"
            log.warning(still, self.name, event.batch_id, event.path, event.reason)
            self.report.rejected[event.path] = event.reason or ""
        for file in plan.rewritten:
            log.warning(
                "bronze %s: changed size or time after it landed, new content not read (the feed rewrote history): %s",
                self.name,
                file.path,
            )
        self.record([self.event(file, plan.batch_id, REWRITTEN) for file in plan.rewritten])
        gone = "planned by a run that did not finish, and no longer in the landing folder"
        self.record([Recorded(*astuple(e)[:4], REJECTED, gone, e.read_as) for e in plan.vanished])


def ingest_source(spark: SparkSession, settings: Settings, name: str) -> IngestReport:
    """Land the files of one source not landed before into its bronze table, and say what was not read."""
    started = time.monotonic()
    report = _Ingest(spark, settings, name).run()
    log.info(
        "bronze %s: %d file(s), %d row(s) landed; %d rejected, %d not matched; up to date in %.1fs",
        name,
        report.files_landed,
        report.rows_landed,
        len(report.rejected),
        len(report.unmatched),
        time.monotonic() - started,
    )
    return report


def run(spark: SparkSession, settings: Settings) -> dict[str, IngestReport]:
    """Ingest every source of the use case concurrently. A strict source that left a file unread fails the
    step once every source has landed what it could."""
    tables.ensure_schema(spark, settings.schema("bronze"))
    tables.ensure_schema(spark, settings.schema("ops"))
    reports = tables.for_each_table(settings.use_case.sources, lambda name: ingest_source(spark, settings, name))
    unread = {name: report.problems() for name, report in reports.items() if report.strict and report.problems()}
    if unread:
        listed = "; ".join(f"{name}: {problem}" for name, problem in unread.items())
        manifest = settings.table("ops", landing.MANIFEST_TABLE)
        message = f"strict sources left files unread ({listed}); every other file landed, see {manifest}"
        raise LandingIncomplete(message, reports)
    return reports
