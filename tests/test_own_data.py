"""Bringing your own data: reference tables without an event time, use cases without a generator, files in
their own layout, and gold tables, labels and features declared in Spark SQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from conftest import make_environment
from lakeforge import bronze, cli, gold, silver
from lakeforge.config import Settings, load_use_case
from lakeforge.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"

# A small use case of someone's files: monthly event CSVs in a folder each, hourly readings as JSON lines
# files directly in their folder, and a static reference table sent whole as one CSV.
OWN = {
    "name": "stations",
    "sources": {
        "trips": {
            "format": "csv",
            "files": "*/*.csv",
            "key": ["trip_id"],
            "event_time": "started_at",
            "columns": {"trip_id": "string", "station_id": "string", "started_at": "timestamp", "minutes": "double"},
            "expectations": [
                {"type": "expect_column_values_to_not_be_null", "column": "trip_id", "action": "quarantine"}
            ],
        },
        "readings": {
            "format": "json",
            "files": "readings-*.jsonl",
            "key": ["station_id", "read_at"],
            "event_time": "read_at",
            "columns": {"station_id": "string", "read_at": "timestamp", "bikes": "int"},
        },
        "stations": {
            "format": "csv",
            "files": "stations*.csv",
            "key": ["station_id"],
            "columns": {"station_id": "string", "name": "string", "capacity": "int"},
        },
    },
    "gold": {
        "station_trips": {
            "inputs": ["trips", "stations"],
            "sql": (
                "SELECT s.station_id, s.name, count(t.trip_id) AS trips, round(avg(t.minutes), 2) AS avg_minutes "
                "FROM stations s LEFT JOIN trips t ON t.station_id = s.station_id AND t.minutes >= :min_minutes "
                "GROUP BY s.station_id, s.name"
            ),
            "params": {"min_minutes": 1},
        }
    },
}


def _write_config(tmp_path: Path, data: dict) -> Path:
    (tmp_path / "usecases").mkdir(parents=True, exist_ok=True)
    (tmp_path / "envs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "usecases" / f"{data['name']}.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    (tmp_path / "envs" / "local.yml").write_text((CONF / "envs" / "local.yml").read_text())
    return tmp_path


def test_a_use_case_of_real_files_needs_no_event_time_for_a_reference_table_and_no_generator(tmp_path):
    use_case = load_use_case("stations", _write_config(tmp_path, OWN))
    assert use_case.generator is None
    assert use_case.sources["stations"].event_time is None and use_case.sources["stations"].latest_by == "_ingested_at"
    assert use_case.sources["trips"].latest_by == "started_at"
    assert use_case.gold["station_trips"].computed_by == "SQL"


def test_generate_data_without_a_generator_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LAKEFORGE_CONF", str(_write_config(tmp_path, OWN)))
    for command in (["generate-data"], ["simulate", "--days", "2"]):
        assert cli.main([*command, "--use-case", "stations"]) == cli.EXIT_FAILURE
        assert capsys.readouterr().err.splitlines() == [
            "error: use case 'stations' names no generator: generate-data and simulate make demo data only for a "
            "use case with `generator: package.module:function`; land real files under the landing folder instead"
        ]


def _gold(**changes):
    return {"name": "stations", "sources": OWN["sources"], "gold": {"station_trips": {"inputs": ["trips"], **changes}}}


@pytest.mark.parametrize(
    ("data", "key", "message"),
    [
        (_gold(sql="SELECT * FROM payments"), "gold.station_trips", "the SQL reads 'payments', which is not one of"),
        (_gold(sql="SELECT * FROM silver.trips"), "gold.station_trips", "name an input by itself"),
        (_gold(sql="SELEC trip_id FROM trips"), "gold.station_trips", "the SQL does not parse"),
        (_gold(sql="SELECT trip_id FROM trips WHERE"), "gold.station_trips", "the SQL does not parse"),
        (_gold(sql="DELETE FROM trips"), "gold.station_trips", "the SQL must be one query (SELECT ...), it is DELETE"),
        (_gold(sql="SELECT 1 FROM trips; DROP TABLE x"), "gold.station_trips", "it is SELECT, DROP"),
        (_gold(sql="SELECT * FROM trips WHERE minutes > :low"), "gold.station_trips", "uses :low, not given in"),
        (_gold(sql="SELECT * FROM trips", params={"low": 1}), "gold.station_trips", "params low are not used"),
        (_gold(), "gold.station_trips", "give either 'transform'"),
        (
            _gold(sql="SELECT * FROM trips", transform="lakeforge.usecases.churn:daily_revenue"),
            "gold.station_trips",
            "not both",
        ),
        (_gold(sql="SELECT * FROM trips", inputs=["trips; DROP"]), "gold.station_trips.inputs.0", "not a valid"),
        ({**OWN, "sources": {"s": {**OWN["sources"]["stations"], "files": "../x/*"}}}, "sources.s.files", "relative"),
        (
            {**OWN, "sources": {"s": {**OWN["sources"]["stations"], "event_time": "seen_at"}}, "gold": {}},
            "sources.s",
            "'seen_at' is used as key or event_time but is not in columns",
        ),
    ],
)
def test_a_wrong_sql_transform_or_layout_fails_at_load_naming_file_and_key(tmp_path, data, key, message):
    directory = _write_config(tmp_path, data)
    with pytest.raises(ConfigError) as error:
        load_use_case("stations", directory)
    assert error.value.file == str(directory / "usecases" / "stations.yml")
    assert error.value.key == key and message in error.value.expected, error.value


def _land(root: Path, source: str, name: str, *lines: str) -> None:
    path = root / "landing" / "stations" / source / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _rows(spark, settings: Settings, layer: str, name: str, key: str, *columns: str) -> dict:
    return {r[key]: tuple(r[c] for c in columns) for r in spark.read.table(settings.table(layer, name)).collect()}


def test_files_in_their_own_layout_land_and_a_reference_table_keeps_the_latest_ingest_per_key(spark, tmp_path):
    settings = Settings(
        use_case=load_use_case("stations", _write_config(tmp_path / "conf", OWN)),
        env=make_environment(tmp_path, "own"),
    )
    header = "trip_id,station_id,started_at,minutes"
    _land(
        tmp_path,
        "trips",
        "2026-01/trips-2026-01.csv",
        header,
        "t1,s1,2026-01-03 08:00:00,12.5",
        "t2,s2,2026-01-04 09:30:00,0.5",
        ",s1,2026-01-05 10:00:00,3",
    )
    _land(tmp_path, "trips", "2026-02/trips-2026-02.csv", header, "t3,s1,2026-02-01 07:15:00,20")
    readings = [{"station_id": "s1", "read_at": f"2026-01-03T0{h}:00:00", "bikes": 10 - h} for h in range(3)]
    _land(tmp_path, "readings", "readings-01.jsonl", *(json.dumps(r) for r in readings))
    stations = "station_id,name,capacity"
    _land(tmp_path, "stations", "stations.csv", stations, "s1,Old Town,20", "s2,Harbour,15", "s1,Old Town Square,22")
    bronze.run(spark, settings)
    silver.run(spark, settings)
    read = {name: spark.read.table(settings.table("bronze", name)).count() for name in settings.use_case.sources}
    assert read == {"trips": 4, "readings": 3, "stations": 3}
    # Within one file the later line of a key wins: no event time says otherwise.
    current = _rows(spark, settings, "silver", "stations", "station_id", "name", "capacity")
    assert current == {"s1": ("Old Town Square", 22), "s2": ("Harbour", 15)}
    assert _rows(spark, settings, "silver", "trips_quarantine", "station_id", "_quarantine_reasons") == {
        "s1": (["expect_column_values_to_not_be_null:trip_id"],)
    }
    assert _rows(spark, settings, "silver", "readings", "read_at", "bikes") != {}

    # The reference table is sent again: the newer file wins for its keys, even with no event time.
    _land(tmp_path, "stations", "stations-2.csv", stations, "s1,Old Town,18", "s3,Station Road,9")
    bronze.run(spark, settings)
    silver.run(spark, settings)
    current = _rows(spark, settings, "silver", "stations", "station_id", "name", "capacity")
    assert current == {"s1": ("Old Town", 18), "s2": ("Harbour", 15), "s3": ("Station Road", 9)}

    gold.run(spark, settings)
    # t2 (0.5 minutes) is below :min_minutes; s3 has no trip; the quarantined trip never reached silver.
    assert _rows(spark, settings, "gold", "station_trips", "station_id", "trips", "avg_minutes") == {
        "s1": (2, 16.25),
        "s2": (0, None),
        "s3": (0, None),
    }


def _someones_files(root: Path) -> Path:
    """Monthly trip CSVs in folders, hourly readings as JSON lines (one gzipped), a reference CSV."""
    import gzip

    files = root / "export"
    header = "trip_id,station_id,started_at,minutes"
    (files / "trips" / "2026-01").mkdir(parents=True)
    (files / "trips" / "2026-02").mkdir(parents=True)
    (files / "trips" / "2026-01" / "trips.csv").write_text(
        f"{header}\nt1,s1,2026-01-03 08:00:00,12.5\nt2,s2,2026-01-04 09:30:00,0.5\n"
    )
    (files / "trips" / "2026-02" / "trips.csv").write_text(f"{header}\nt3,s1,2026-02-01 07:15:00,20\n")
    (files / "readings").mkdir()
    lines = [
        json.dumps({"station_id": s, "read_at": f"2026-01-03T0{h}:00:00", "bikes": 9 - h})
        for s in ("s1", "s2")
        for h in range(3)
    ]
    (files / "readings" / "readings-01.jsonl").write_text("\n".join(lines[:3]) + "\n")
    with gzip.open(files / "readings" / "readings-02.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines[3:]) + "\n")
    (files / "stations").mkdir()
    (files / "stations" / "stations.csv").write_text("station_id,name,capacity\ns1,Old Town,20\ns2,Harbour,15\n")
    (files / "stations" / "_SUCCESS").write_text("")
    (files / "members").mkdir()  # a spreadsheet's export: Windows' code page, not UTF-8
    (files / "members" / "members.csv").write_bytes("member_id,name\nm1,Zo\u00eb\nm2,Ren\u00e9e\n".encode("cp1252"))
    (files / "events").mkdir()  # an API's export: one pretty-printed array, an object inside each element
    events = [{"event_id": f"e{n}", "detail": {"kind": "dock", "n": n}} for n in (1, 2)]
    (files / "events" / "events.json").write_text(json.dumps(events, indent=2))
    return files


def test_init_use_case_writes_a_config_that_loads_and_runs_the_medallion_without_edits(spark, tmp_path):
    from lakeforge import onboarding

    conf = _write_config(tmp_path / "conf", OWN).parent / "conf"
    settings_env = make_environment(tmp_path, "init")
    written = onboarding.init_use_case(
        spark, "found", _someones_files(tmp_path), conf, landing=settings_env.path("landing")
    )
    text = written.read_text()
    assert "GUESS" in text and "reference table" in text
    use_case = load_use_case("found", conf)
    trips, readings, stations = (use_case.sources[n] for n in ("trips", "readings", "stations"))
    assert (trips.format, trips.files, trips.key, trips.event_time) == ("csv", "*/*.csv", ["trip_id"], "started_at")
    assert trips.columns == {
        "trip_id": "string",
        "station_id": "string",
        "started_at": "timestamp",
        "minutes": "double",
    }
    assert (readings.format, readings.key, readings.event_time) == ("json", ["station_id", "read_at"], "read_at")
    assert readings.files == "{*.jsonl,*.jsonl.gz}" and readings.columns["bikes"] == "bigint"
    assert (stations.files, stations.key, stations.event_time) == ("*.csv", ["station_id"], None)
    assert [e.column for e in stations.expectations] == ["station_id"]
    members, events = use_case.sources["members"], use_case.sources["events"]
    assert (members.encoding, members.multiline, events.encoding, events.multiline) == (
        "windows-1252", False, "utf-8", True
    )  # fmt: skip
    assert events.columns == {"detail": "json", "event_id": "string"} and events.key == ["event_id"]

    settings = Settings(use_case=use_case, env=settings_env)
    bronze.run(spark, settings)
    silver.run(spark, settings)
    gold.run(spark, settings)
    landed = {name: spark.read.table(settings.table("silver", name)).count() for name in use_case.sources}
    assert landed == {"trips": 3, "readings": 6, "stations": 2, "members": 2, "events": 2}
    names = _rows(spark, settings, "silver", "members", "member_id", "name")
    assert names == {"m1": ("Zo\u00eb",), "m2": ("Ren\u00e9e",)}
    details = _rows(spark, settings, "silver", "events", "event_id", "detail")
    assert {key: json.loads(value) for key, (value,) in details.items()} == {
        "e1": {"kind": "dock", "n": 1},
        "e2": {"kind": "dock", "n": 2},
    }
    audit = spark.read.table(settings.table("ops", silver.AUDIT_TABLE)).where("step = 'silver'").collect()
    assert {
        r.source_table.split(".")[-1].strip("`"): (r.rows_read, r.rows_merged, r.rows_quarantined) for r in audit
    } == {
        "trips": (3, 3, 0),
        "readings": (6, 6, 0),
        "stations": (2, 2, 0),
        "members": (2, 2, 0),
        "events": (2, 2, 0),
    }


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"trips/a.csv": "id,x\n1,2\n", "trips/b.json": "{}\n"}, "mixes csv and json files"),
        ({"trips/a.parquet": "x"}, "files neither CSV nor JSON lines"),
        ({"trips/a.csv": "trip id,x\n1,2\n"}, "column names ['trip id'] are not plain identifiers"),
        ({"trip-log/a.csv": "id,x\n1,2\n"}, "source folder names ['trip-log'] are not plain identifiers"),
        ({"a.csv": "id,x\n1,2\n"}, "has no source folders"),
    ],
)
def test_init_use_case_refuses_what_it_cannot_read_in_one_line(spark, tmp_path, layout, message):
    from lakeforge import onboarding

    for relative, text in layout.items():
        (tmp_path / "in" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / relative).write_text(text)
    with pytest.raises(onboarding.OnboardingError, match=re.escape(message)):
        onboarding.init_use_case(spark, "found", tmp_path / "in", tmp_path / "conf")
    assert not (tmp_path / "conf" / "usecases" / "found.yml").exists()


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"scoring.mode": "events"}, "scoring", "mode: events needs events (a table), event_key"),
        ({"scoring.event_key": "[order_id]"}, "scoring", "event_key belong to mode: events"),
        (
            {"scoring.mode": "events", "scoring.events": "silver.orders", "scoring.event_key": "[order_id]"}
            | {"scoring.event_time": "order_ts"},
            "<root>",
            "the labels must be keyed by it too (labels.entity is ['customer_id'])",
        ),
        (
            {"scoring.mode": "events", "scoring.events": "silver.payments", "scoring.event_key": "[order_id]"}
            | {"scoring.event_time": "order_ts"},
            "<root>",
            "'scoring' reads silver.payments, but no silver table 'payments'",
        ),
    ],
)
def test_an_incomplete_events_scoring_section_fails_at_load(overrides, key, message):
    with pytest.raises(ConfigError) as error:
        load_use_case("churn", overrides=overrides)
    assert error.value.key == key and message in error.value.expected, error.value
