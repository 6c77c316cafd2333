"""Landing real feeds: every file accounted for, nothing blocked by one bad file, nothing altered in silence.

One messy feed is landed three times: as it arrives (a truncated gzip beside good ones, Latin-1 bytes in
UTF-8 files, JSON objects where values belong, files no pattern matches, a JSON array export, a CSV with
quoted newlines and one with the wrong header), then unchanged, then after the fixes (the gzip and the CSV
sent again, a landed file rewritten, the stray file moved away). Each stage's bronze version is kept, so
every test reads the tables as that stage left them.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from lakeforge import bronze, landing, silver, tables
from lakeforge.config import Settings, Source, load_use_case
from lakeforge.errors import LandingIncomplete
from lakeforge.globs import GlobError, escape, glob_regex
from lakeforge.landing import LANDED, PLANNED, REJECTED, REWRITTEN, LandingFile, Recorded

NO_MODELS = {"gold": {}, "features": None, "training": None, "scoring": None, "monitoring": None}
ORDER_COLUMNS = {
    "order_id": "string",
    "customer_id": "string",
    "order_ts": "timestamp",
    "amount": "double",
    "status": "string",
    "updated_at": "timestamp",
}
NOTE_COLUMNS = {"note_id": "string", "body": "string", "recorded_at": "timestamp"}
SOURCES = {
    "orders": Source(format="json", key=["order_id"], event_time="updated_at", columns=ORDER_COLUMNS),
    "exports": Source(format="json", key=["order_id"], event_time="updated_at", columns=ORDER_COLUMNS, multiline=True),
    "notes": Source(format="csv", key=["note_id"], event_time="recorded_at", columns=NOTE_COLUMNS, multiline=True),
    "latin_notes": Source(
        format="csv", key=["note_id"], columns=NOTE_COLUMNS, encoding="windows-1252", files="*/*.csv", strict=True
    ),
}


def order(order_id: str, **values) -> dict:
    row = {"order_id": order_id, "customer_id": "C1", "order_ts": "2026-03-01 10:00:00", "amount": 5.0}
    return {**row, "status": "completed", "updated_at": "2026-03-01 10:00:00", **values}


def json_lines(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


GOOD_ORDERS = [order(f"O{n}") for n in range(1, 4)]
LATIN1_LINE = b'{"order_id": "O4", "customer_id": "Jos\xe9", "amount": 1}\n'
NESTED = [
    order("O5", customer_id={"id": "C5"}),
    order("O6", amount=[1, 2]),
    order("O7", customer_id="[not json"),
    order("O8", status={"code": 1}),
]
GZIPPED = [order(f"G{n}") for n in range(1, 3)]
LATE = [order(f"L{n}", customer_id=f"C{n}" * 40) for n in range(1, 400)]  # compresses well: truncation cuts rows
LATE_GZIP = gzip.compress(json_lines(LATE))
NOTE_HEADER = b"note_id,body,recorded_at\n"
NOTES = (
    NOTE_HEADER + b'N1,"line one\nline two",2026-03-01 10:00:00\nN2,caf\xe9,2026-03-01 10:00:00\nN3,plain,2026-03-01\n'
)


@dataclass
class Stage:
    """What one ingest left: the bronze and silver versions, the reports and the warnings logged."""

    reports: dict[str, bronze.IngestReport]
    versions: dict[str, int | None]
    warnings: list[str]
    error: Exception | None


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _write(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def _land(spark, settings: Settings) -> Stage:
    handler = Warnings()
    logging.getLogger("lakeforge").addHandler(handler)
    reports, error = {}, None
    try:
        try:
            reports = bronze.run(spark, settings)
        except LandingIncomplete as exc:
            reports, error = exc.reports, exc
        silver.run(spark, settings, validate=False)
    finally:
        logging.getLogger("lakeforge").removeHandler(handler)
    layers = [("bronze", n) for n in SOURCES] + [("silver", n) for n in SOURCES]
    layers += [("silver", f"{n}_quarantine") for n in SOURCES] + [("ops", landing.MANIFEST_TABLE)]
    versions = {f"{layer}.{name}": tables.table_version(spark, settings.table(layer, name)) for layer, name in layers}
    return Stage(reports, versions, handler.lines, error)


@pytest.fixture(scope="module")
def feed(spark, tmp_path_factory, environment_for):
    use_case = load_use_case("churn").model_copy(update={"sources": SOURCES, **NO_MODELS})
    settings = Settings(use_case=use_case, env=environment_for(tmp_path_factory.mktemp("landing"), "landing"))
    root = Path(settings.env.path("landing")) / "churn"
    orders, exports, notes, latin = (root / name / "batch_00000" for name in SOURCES)
    _write(orders, "part-00000.json", json_lines(GOOD_ORDERS) + LATIN1_LINE + json_lines(NESTED))
    _write(orders, "part-00001.json.gz", gzip.compress(json_lines(GZIPPED)))
    _write(orders, "part-00002.json.gz", LATE_GZIP[: len(LATE_GZIP) // 2])
    _write(orders, "orders-extra.json", json_lines([order("X1")]))
    _write(orders, "_SUCCESS", b"")  # hidden, as Spark writes it: never read, never warned about
    _write(exports, "part-00000.json", json.dumps([order("E1"), order("E2")], indent=2).encode())
    _write(exports, "part-00001.json", json.dumps([order("E3"), 5]).encode())
    _write(exports, "part-00002.json", json.dumps(order("E4"), indent=4).encode())
    _write(exports, "part-00003.json", json.dumps([order("E5")]).encode().replace(b"C1", b"C\xe9"))
    _write(notes, "part-00000.csv", NOTES)
    _write(notes, "part-00001.csv", b"body,note_id,recorded_at\nsecond,N4,2026-03-01 10:00:00\n")
    _write(latin, "part-00000.csv", NOTE_HEADER + b"N1,caf\xe9 cr\xe8me \x80 5,2026-03-01 10:00:00\n")
    _write(latin.parent, "README.md", b"notes exported by hand\n")

    first = _land(spark, settings)
    unchanged = _land(spark, settings)

    _write(orders, "part-00002.json.gz", LATE_GZIP)  # sent again, whole
    _write(notes, "part-00001.csv", NOTE_HEADER + b"N4,second,2026-03-01 10:00:00\n")
    (orders / "part-00000.json").write_bytes((orders / "part-00000.json").read_bytes() + json_lines([order("O9")]))
    (latin.parent / "README.md").unlink()
    fixed = _land(spark, settings)
    return settings, first, unchanged, fixed


def _rows(spark, settings: Settings, stage: Stage, layer: str, name: str):
    table = settings.table(layer, name)
    version = stage.versions[f"{layer}.{name}"]
    return spark.read.option("versionAsOf", version).table(table) if version is not None else None


def _manifest(spark, settings: Settings, stage: Stage, source: str) -> list[tuple[str, str, str | None]]:
    rows = _rows(spark, settings, stage, "ops", landing.MANIFEST_TABLE)
    rows = rows.where(F.col("bronze_table") == settings.table("bronze", source)).orderBy("recorded_at")
    return [(Path(r["path"]).name, r["status"], r["reason"]) for r in rows.collect()]


def _ids(df, column: str = "order_id") -> list[str]:
    return sorted(r[0] for r in df.select(column).collect() if r[0] is not None)


def test_a_truncated_gzip_is_rejected_and_the_rest_of_its_batch_lands(spark, feed):
    settings, first, unchanged, fixed = feed
    landed = _rows(spark, settings, first, "bronze", "orders")
    assert _ids(landed) == ["G1", "G2", *[f"O{n}" for n in range(1, 9)]]
    [(path, reason)] = first.reports["orders"].rejected.items()
    assert path.endswith("part-00002.json.gz") and "Unexpected end of input stream" in reason
    assert "\n" not in reason and "\tat " not in reason
    assert [w for w in first.warnings if w.startswith("bronze orders: rejected")] == [
        f"bronze orders: rejected {path}: {reason}"
    ]
    events = _manifest(spark, settings, first, "orders")
    assert ("part-00002.json.gz", REJECTED, reason) in events
    assert sorted(name for name, status, _ in events if status == LANDED) == ["part-00000.json", "part-00001.json.gz"]


def test_an_unchanged_rejected_file_is_named_again_and_nothing_is_read_twice(spark, feed):
    settings, first, unchanged, fixed = feed
    assert unchanged.versions["bronze.orders"] == first.versions["bronze.orders"]
    assert unchanged.versions["silver.orders"] == first.versions["silver.orders"]
    assert any("still rejected" in w and "part-00002.json.gz" in w for w in unchanged.warnings)
    assert _manifest(spark, settings, unchanged, "orders") == _manifest(spark, settings, first, "orders")


def test_the_file_sent_again_lands_exactly_once(spark, feed):
    settings, first, unchanged, fixed = feed
    landed = _rows(spark, settings, fixed, "bronze", "orders")
    late = landed.where(F.col("order_id").startswith("L"))
    assert late.count() == len(LATE) and _ids(late) == sorted(row["order_id"] for row in LATE)
    assert landed.count() == _rows(spark, settings, first, "bronze", "orders").count() + len(LATE)
    assert fixed.reports["orders"].rows_landed == len(LATE) and not fixed.reports["orders"].rejected
    assert _manifest(spark, settings, fixed, "orders")[-1][:2] == ("part-00002.json.gz", LANDED)


def test_invalid_utf8_is_quarantined_with_its_bytes_as_they_arrived(spark, feed):
    settings, first, *_ = feed
    [row] = _rows(spark, settings, first, "bronze", "orders").where("order_id = 'O4'").collect()
    assert base64.b64decode(row[bronze.ORIGINAL_BYTES][bronze.WHOLE_LINE]) == LATIN1_LINE.rstrip(b"\n")
    assert row["customer_id"] == "Jos\ufffd"  # what bronze can show as text; the bytes above are what arrived
    quarantine = _rows(spark, settings, first, "silver", "orders_quarantine")
    [kept] = quarantine.where("order_id = 'O4'").collect()
    assert kept[silver.REASONS] == [silver.INVALID_ENCODING]
    assert base64.b64decode(kept[bronze.ORIGINAL_BYTES][bronze.WHOLE_LINE]) == LATIN1_LINE.rstrip(b"\n")


def test_a_json_object_or_array_where_a_value_belongs_fails_its_cast(spark, feed):
    settings, first, *_ = feed
    quarantine = _rows(spark, settings, first, "silver", "orders_quarantine")
    reasons = {r["order_id"]: r[silver.REASONS] for r in quarantine.collect()}
    assert reasons["O5"] == ["cast_failed:customer_id"]
    assert reasons["O6"] == ["cast_failed:amount"]
    assert reasons["O8"] == ["cast_failed:status"]
    [kept] = quarantine.where("order_id = 'O5'").collect()
    assert json.loads(kept["customer_id"]) == {"id": "C5"}  # the value as it arrived
    silver_ids = _ids(_rows(spark, settings, first, "silver", "orders"))
    assert "O7" in silver_ids and not {"O4", "O5", "O6", "O8"} & set(silver_ids)  # "[not json" is a string


def test_a_file_no_pattern_matches_is_named_on_every_run(spark, feed):
    settings, first, unchanged, fixed = feed
    for stage in (first, unchanged):
        assert [Path(p).name for p in stage.reports["orders"].unmatched] == ["orders-extra.json"]
        assert sum("no pattern matches it (*/part-*)" in w and "orders-extra.json" in w for w in stage.warnings) == 1
    assert "X1" not in _ids(_rows(spark, settings, fixed, "bronze", "orders"))
    assert not any("_SUCCESS" in w for stage in feed[1:] for w in stage.warnings)


def test_a_strict_source_fails_the_step_after_landing_what_it_could(spark, feed):
    settings, first, unchanged, fixed = feed
    assert isinstance(first.error, LandingIncomplete)
    assert "latin_notes: 1 file(s) no pattern matches ('*/*.csv')" in str(first.error)
    assert "orders" not in str(first.error).split("(")[1].split(";")[0]  # orders is not strict: warned only
    assert _ids(_rows(spark, settings, first, "bronze", "latin_notes"), "note_id") == ["N1"]
    assert fixed.error is None


def test_a_declared_encoding_decodes_every_byte(spark, feed):
    settings, first, *_ = feed
    [row] = _rows(spark, settings, first, "silver", "latin_notes").collect()
    assert row["body"] == "café crème € 5"


def test_a_landed_file_that_changes_is_named_once_and_not_read_again(spark, feed):
    settings, first, unchanged, fixed = feed
    warned = [w for w in fixed.warnings if "changed size or time after it landed" in w]
    assert len(warned) == 1 and warned[0].endswith("part-00000.json")
    assert "O9" not in _ids(_rows(spark, settings, fixed, "bronze", "orders"))
    assert ("part-00000.json", REWRITTEN, None) in _manifest(spark, settings, fixed, "orders")


def test_quoted_newlines_stay_in_one_csv_field(spark, feed):
    settings, first, *_ = feed
    rows = {r["note_id"]: r for r in _rows(spark, settings, first, "bronze", "notes").collect()}
    assert rows["N1"]["body"] == "line one\nline two"
    assert sorted(rows) == ["N1", "N2", "N3"]
    assert (
        rows["N2"]["body"] == "caf\ufffd" and base64.b64decode(rows["N2"][bronze.ORIGINAL_BYTES]["body"]) == b"caf\xe9"
    )
    assert rows["N1"][bronze.ORIGINAL_BYTES] is None
    quarantine = {
        r["note_id"]: r[silver.REASONS] for r in _rows(spark, settings, first, "silver", "notes_quarantine").collect()
    }
    assert quarantine == {"N2": [silver.INVALID_ENCODING]}


def test_a_csv_with_another_header_is_rejected_then_lands_when_sent_right(spark, feed):
    settings, first, unchanged, fixed = feed
    [(path, reason)] = first.reports["notes"].rejected.items()
    assert path.endswith("part-00001.csv") and "CSV header does not conform to the schema" in reason
    assert _ids(_rows(spark, settings, fixed, "silver", "notes"), "note_id") == ["N1", "N3", "N4"]


def test_json_documents_are_split_into_their_objects(spark, feed):
    settings, first, *_ = feed
    landed = _rows(spark, settings, first, "bronze", "exports")
    assert _ids(landed) == ["E1", "E2", "E3", "E4"]
    assert [r[0] for r in landed.where(F.col(bronze.CORRUPT).isNotNull()).select(bronze.CORRUPT).collect()] == ["5"]
    [(path, reason)] = first.reports["exports"].rejected.items()
    assert path.endswith("part-00003.json") and reason == bronze.NOT_UTF8


# A killed run, and a manifest that is missing: what the next run does.


def _one_source(tmp_path, environment_for, suffix: str) -> tuple[Settings, Path]:
    use_case = load_use_case("churn").model_copy(update={"sources": {"orders": SOURCES["orders"]}, **NO_MODELS})
    settings = Settings(use_case=use_case, env=environment_for(tmp_path, suffix))
    return settings, Path(settings.env.path("landing")) / "churn" / "orders" / "batch_00000"


def test_a_batch_planned_by_a_killed_run_is_replayed_as_planned(spark, tmp_path, environment_for):
    settings, folder = _one_source(tmp_path, environment_for, "replay")
    first = _write(folder, "part-00000.json", json_lines(GOOD_ORDERS))
    ingest = bronze._Ingest(spark, settings, "orders")
    [planned] = ingest.listing()
    gone = LandingFile(planned.path.replace("part-00000", "part-00009"), "", "batch_00000/part-00009.json", 1, 1)
    for layer in ("bronze", "ops"):
        tables.ensure_schema(spark, settings.schema(layer))
    ingest.record([ingest.event(planned, 0, PLANNED), ingest.event(gone, 0, PLANNED)])
    _write(folder, "part-00001.json", json_lines([order("O4")]))  # arrived after the killed run planned

    report = bronze.run(spark, settings)["orders"]
    landed = spark.read.table(settings.table("bronze", "orders"))
    assert _ids(landed) == ["O1", "O2", "O3", "O4"] and report.files_landed == 2
    events = [(Path(e.path).name, e.batch_id, e.status) for e in ingest.recorded([])]
    assert events[2:] == [
        ("part-00009.json", 0, REJECTED),
        ("part-00000.json", 0, LANDED),
        ("part-00001.json", 1, PLANNED),
        ("part-00001.json", 1, LANDED),
    ]
    assert first.exists()


def test_a_replayed_batch_that_had_landed_is_not_appended_again(spark, tmp_path, environment_for):
    settings, folder = _one_source(tmp_path, environment_for, "relanded")
    _write(folder, "part-00000.json", json_lines(GOOD_ORDERS))
    bronze.run(spark, settings)
    manifest = settings.table("ops", landing.MANIFEST_TABLE)
    spark.sql(f"DELETE FROM {manifest} WHERE status = 'landed'")  # killed after bronze committed
    version = tables.table_version(spark, settings.table("bronze", "orders"))
    bronze.run(spark, settings)
    assert tables.table_version(spark, settings.table("bronze", "orders")) == version
    assert spark.read.table(manifest).where("status = 'landed'").count() == 1

    spark.sql(f"DROP TABLE {manifest}")  # a bronze table landed before the manifest existed
    report = bronze.run(spark, settings)["orders"]
    assert tables.table_version(spark, settings.table("bronze", "orders")) == version and report.files_landed == 0
    assert [(r["status"], r["batch_id"]) for r in spark.read.table(manifest).collect()] == [(LANDED, -1)]


# The pure parts.


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("*/part-*", ["b1/part-0.json", "b1/part-0.json.gz"], ["part-0.json", "b1/c/part-0", "b1/x-part-0"]),
        ("{2026,2027}-*/*.csv", ["2026-01/a.csv", "2027-12/b.csv"], ["2025-01/a.csv", "2026-01/a.json"]),
        ("day=??/[a-c]*.json", ["day=01/a.json", "day=31/c1.json"], ["day=1/a.json", "day=01/d.json"]),
        ("[^x]*.json", ["a.json"], ["x.json", "/a.json"]),
        ("odd\\*name", ["odd*name"], ["oddname"]),
    ],
)
def test_file_patterns_match_as_hadoop_globs(pattern, matches, misses):
    regex = glob_regex(pattern)
    assert all(regex.match(path) for path in matches)
    assert not any(regex.match(path) for path in misses)


@pytest.mark.parametrize("pattern", ["*/part-[0", "{a,b", "a}", "trailing\\"])
def test_a_pattern_that_cannot_be_read_is_refused_when_config_loads(pattern):
    with pytest.raises(GlobError):
        glob_regex(pattern)
    with pytest.raises(ValueError, match="files"):
        Source(format="csv", key=["a"], columns={"a": "string"}, files=pattern)


def test_escaped_paths_read_one_file():
    assert escape("file:/l/b 1/part[1]{x}*?.json") == "file:/l/b 1/part\\[1\\]\\{x\\}\\*\\?.json"


def test_an_encoding_that_is_not_offered_is_refused_when_config_loads():
    with pytest.raises(ValueError, match="encoding"):
        Source(format="json", key=["a"], columns={"a": "string"}, encoding="shift_jis")


def _file(name: str, size: int = 10, modified: int = 1) -> LandingFile:
    return LandingFile(f"file:/l/{name}", f"file:/l/{name}", name, size, modified)


def _event(name: str, status: str, batch: int = 0, size: int = 10, read_as: str = "json lines utf-8") -> Recorded:
    return Recorded(f"file:/l/{name}", size, 1, batch, status, None, read_as)


def test_a_plan_reads_new_and_changed_rejected_files_and_names_the_rest():
    listing = [
        _file("b/part-1"),
        _file("b/part-2", size=20),
        _file("b/part-3"),
        _file("b/part-4", size=99),
        _file("b/x"),
    ]
    manifest = [
        _event("b/part-2", LANDED, 0),
        _event("b/part-3", REJECTED, 1),
        _event("b/part-4", PLANNED, 2),
        _event("b/part-4", LANDED, 2),
        _event("b/part-5", REJECTED, 2, read_as="json lines iso-8859-1"),  # gone from the folder: ignored
    ]
    plan = landing.plan_batch(listing, manifest, "*/part-*", "json lines utf-8")
    assert (plan.batch_id, plan.replay) == (3, False)
    assert [f.relative for f in plan.to_read] == ["b/part-1"]
    assert [f.relative for f in plan.rewritten] == ["b/part-2", "b/part-4"]
    assert [e.path for e in plan.still_rejected] == ["file:/l/b/part-3"]
    assert [f.relative for f in plan.unmatched] == ["b/x"]
    read_otherwise = landing.plan_batch(listing, manifest, "*/part-*", "json multiline utf-8")
    assert [f.relative for f in read_otherwise.to_read] == ["b/part-1", "b/part-3"]


def test_a_pending_batch_is_replayed_before_anything_new():
    listing = [_file("b/part-1"), _file("b/part-2")]
    plan = landing.plan_batch(listing, [_event("b/part-1", PLANNED, 4), _event("b/part-9", PLANNED, 4)], "*/*", "x")
    assert (plan.batch_id, plan.replay) == (4, True)
    assert [f.relative for f in plan.to_read] == ["b/part-1"]
    assert [e.path for e in plan.vanished] == ["file:/l/b/part-9"]


def test_spark_read_errors_name_the_file_and_a_one_line_reason():
    error = (
        "An error occurred while calling o57.save.\n"
        ": org.apache.spark.SparkException: [FAILED_READ_FILE.NO_HINT] Encountered error while reading file "
        "file:///l/b%201/part-2.json.gz.  SQLSTATE: KD001\n\tat org.apache.spark.X.y(X.scala:1)\n"
        "Caused by: java.io.EOFException: Unexpected end of input stream\n\tat org.apache.hadoop.Z.z(Z.java:2)\n"
    )
    assert landing.unreadable_file(error, ["file:/l/b 1/part-1.json", "file:/l/b 1/part-2.json.gz"]) == (
        "file:/l/b 1/part-2.json.gz"
    )
    assert landing.unreadable_file("java.lang.OutOfMemoryError", ["file:/l/b 1/part-2.json.gz"]) is None
    assert landing.rejection_reason(error) == "EOFException: Unexpected end of input stream"
    header = "Caused by: org.apache.spark.SparkIllegalArgumentException: CSV header does not conform.\n Header: b, a\n"
    assert (
        landing.rejection_reason(header) == "SparkIllegalArgumentException: CSV header does not conform. Header: b, a"
    )


def test_paths_are_compared_without_scheme_or_escapes():
    assert landing.relative_path("file:/l/orders/b 1/part-0", "/l/orders") == "b 1/part-0"
    assert landing.relative_path("dbfs:/l/orders/b/part-0", "dbfs:/l/orders/") == "b/part-0"
    assert landing.relative_path("file:/l/ordersX/part-0", "/l/orders") is None
