"""The command line: its contract (exit codes, one-line errors, help, `--version`, `use-cases`), clear errors before
Spark starts, the setup script's Java check, and `generate-data`."""

from __future__ import annotations

import argparse
import copy
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lakeforge
from lakeforge import cli
from lakeforge.errors import ConfigError, LakeforgeError, ModelRejected, StaleFeatures
from lakeforge.logs import configure_logging

REPO = Path(__file__).resolve().parents[1]


def _lakeforge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lakeforge.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_unknown_use_case_names_the_missing_file():
    result = _lakeforge("run", "all", "--use-case", "no_such_case")
    assert result.returncode == cli.EXIT_FAILURE == 1
    assert "usecases/no_such_case.yml" in result.stderr and "does not exist" in result.stderr


def test_bad_config_fails_before_spark_starts(tmp_path):
    (tmp_path / "usecases").mkdir()
    (tmp_path / "envs").mkdir()
    (tmp_path / "usecases" / "broken.yml").write_text("name: broken\ngenerator: x:y\nsources: {}\n")
    (tmp_path / "envs" / "local.yml").write_text((REPO / "conf" / "envs" / "local.yml").read_text())
    result = _lakeforge("run", "ingest", "--use-case", "broken", env={**os.environ, "LAKEFORGE_CONF": str(tmp_path)})
    assert result.returncode == 1
    assert f"{tmp_path}/usecases/broken.yml: key 'generator'" in result.stderr
    assert "Ivy" not in result.stderr and "SparkContext" not in result.stderr


def test_missing_java_is_one_clear_line(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": os.environ.get("HOME", "/root"), "LAKEFORGE_HOME": str(tmp_path / "home")}
    result = _lakeforge("run", "ingest", "--use-case", "churn", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: Java 17 is required by Spark but `java` was not found: install a JDK 17 and put it on PATH"
    ]


def test_setup_script_checks_java_first(tmp_path):
    result = subprocess.run(
        ["/bin/bash", str(REPO / "setup.sh")], capture_output=True, text=True, env={"PATH": str(tmp_path)}, timeout=30
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Java 17 is required" in result.stderr


def test_generate_data_writes_the_batches_asked_for(spark, tmp_path, monkeypatch):
    """`generate-data --batch 1 --batches 2`: new days 1 and 2 of every source, history (batch 0) untouched."""
    import lakeforge.platforms
    from lakeforge.cli import log, main
    from lakeforge.config import load_use_case

    for attribute in ("handlers", "level", "propagate"):  # main() sets up the lakeforge logger for a process
        monkeypatch.setattr(log, attribute, copy.copy(getattr(log, attribute)))
    monkeypatch.setenv("LAKEFORGE_HOME", str(tmp_path))
    monkeypatch.setattr(lakeforge.platforms.Platform, "session", lambda self, app_name: spark)  # the session's Spark
    args = ["generate-data", "--use-case", "churn", "--rows", "40", "--seed", "3", "--batch", "1", "--batches", "2"]
    assert main(args) == 0
    landing = tmp_path / "landing" / "churn"
    for source in load_use_case("churn").sources:
        assert sorted(p.name for p in (landing / source).iterdir()) == ["batch_00001", "batch_00002"], source
    first, second = (spark.read.text(str(landing / "orders" / f"batch_0000{b}")).collect() for b in (1, 2))
    assert first and second and first != second


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--use-case", "churn", "--days", "0"], "argument --days: must be at least 1, not 0"),
        (["simulate", "--use-case", "churn", "--days", "3", "--record-delay-days", "-1"], "must be 0 or more, not -1"),
        (["generate-data", "--use-case", "churn", "--record-delay-days", "soon"], "--record-delay-days: invalid"),
        (["generate-data", "--use-case", "churn", "--drift-from", "0"], "argument --drift-from: must be at least 1"),
        (["generate-data", "--use-case", "churn", "--rows", "-5"], "argument --rows: must be at least 1, not -5"),
        (["generate-data", "--use-case", "churn", "--rows", "0"], "argument --rows: must be at least 1, not 0"),
        (["generate-data", "--use-case", "churn", "--batches", "0"], "argument --batches: must be at least 1, not 0"),
    ],
)
def test_day_counts_are_checked_before_any_work(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_record_delay_days_defaults_to_the_generators_own_delay():
    args = cli.build_parser().parse_args(["generate-data", "--use-case", "churn", "--record-delay-days", "0"])
    assert args.record_delay_days == 0
    assert cli.build_parser().parse_args(["generate-data", "--use-case", "churn"]).record_delay_days is None


def test_version_and_use_cases_need_no_spark():
    version = _lakeforge("--version")
    assert (version.returncode, version.stdout) == (0, f"lakeforge {lakeforge.__version__}\n")
    listing = _lakeforge("use-cases")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[2:] if not line.startswith("environments")}
    assert set(rows) == {"churn", "maintenance"} and "cancellations are known weeks later" in rows["churn"]
    assert f"environments: cluster, databricks, local, shared (from {REPO / 'conf'})" in listing.stdout


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ModelRejected("the gate kept the champion"), cli.EXIT_MODEL_REJECTED),
        (StaleFeatures("customer_activity is 40 hours old"), cli.EXIT_STALE_FEATURES),
        (ConfigError("conf/usecases/x.yml", "training.max_evals", "an integer"), cli.EXIT_FAILURE),
        (LakeforgeError("anything else"), cli.EXIT_FAILURE),
    ],
)
def test_a_failure_is_one_error_line_and_its_exit_code(error, code, monkeypatch, capsys):
    def fail(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_use_cases", fail)
    assert cli.main(["use-cases"]) == code
    assert capsys.readouterr().err == f"error: {error}\n"
    assert {cli.EXIT_FAILURE, cli.EXIT_USAGE, cli.EXIT_MODEL_REJECTED, cli.EXIT_STALE_FEATURES} == {1, 2, 3, 4}


def test_an_unexpected_error_is_one_line_and_verbose_shows_the_trace(monkeypatch, capsys):
    def fail(args):
        raise ValueError("[TABLE_OR_VIEW_NOT_FOUND] nope\n  at line 1\n  at line 2")

    monkeypatch.setattr(cli, "_cmd_use_cases", fail)
    assert cli.main(["use-cases"]) == cli.EXIT_FAILURE
    assert capsys.readouterr().err == "error: ValueError: [TABLE_OR_VIEW_NOT_FOUND] nope (-v shows the trace)\n"
    with pytest.raises(ValueError, match="TABLE_OR_VIEW_NOT_FOUND"):
        cli.main(["use-cases", "-v"])


@pytest.mark.parametrize(
    ("args", "verbose"),
    [
        (["run", "all", "--use-case", "churn"], False),
        (["-v", "run", "all", "--use-case", "churn"], True),
        (["run", "all", "--use-case", "churn", "-v"], True),
        (["sql", "--verbose", "SHOW TABLES"], True),
    ],
)
def test_verbose_is_accepted_before_and_after_the_command(args, verbose):
    assert cli.build_parser().parse_args(args).verbose is verbose


def test_every_argument_of_every_command_says_what_it_is():
    commands = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"generate-data", "simulate", "run", "reproduce", "features", "sql", "use-cases"} <= set(commands.choices)
    silent = [
        (name, action.dest)
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert silent == []


def test_a_usage_error_exits_2_before_spark_starts(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["features", "describe", "--use-case", "churn"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "features describe needs the name of a feature table" in capsys.readouterr().err


def test_logging_is_configured_once_however_often_it_is_asked():
    logger = configure_logging()
    before = list(logger.handlers)
    assert configure_logging(verbose=True) is logger and logger.handlers == before and len(before) >= 1
    assert logger.level == logging.DEBUG and not logger.propagate
    configure_logging()
    assert logger.level == logging.INFO


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--use-case", "../../etc/passwd"], "error: --use-case: key '../../etc/passwd': the name of a file in "),
        (["--use-case", "churn", "--env", "loc al"], "error: --env: key 'loc al': the name of a file in "),
    ],
)
def test_a_name_that_is_not_a_config_file_is_one_line_before_spark(args, expected, capsys):
    assert cli.main(["run", "ingest", *args]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert err.startswith(expected) and err.count("\n") == 1 and "not a valid identifier" in err


def test_side_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """The champion and decision files the DAG branches on: a write that dies leaves the old file and no
    temporary one; every side file of the package goes through `atomic.write_text`."""
    from lakeforge import atomic

    target = tmp_path / "ops" / "decision.json"
    atomic.write_text(target, '{"retrain": false}')
    assert target.read_text() == '{"retrain": false}'

    def dies(source, destination):
        raise OSError("disk gone")

    monkeypatch.setattr(atomic.os, "replace", dies)
    with pytest.raises(OSError, match="disk gone"):
        atomic.write_text(target, '{"retrain": true}')
    assert target.read_text() == '{"retrain": false}' and sorted(p.name for p in target.parent.iterdir()) == [
        "decision.json"
    ]
    package = REPO / "libs" / "lakeforge"
    writers = {p.name for p in package.rglob("*.py") if re.search(r"(?<!atomic)\.write_text\(", p.read_text())}
    assert writers == set(), writers


def test_a_local_home_is_owner_only_and_so_is_what_spark_writes_there(tmp_path, monkeypatch):
    import stat

    from lakeforge.session import private_home

    monkeypatch.setenv("LAKEFORGE_HOME", str(tmp_path / "home"))
    before = os.umask(0o022)
    try:
        home = private_home()
        assert home == tmp_path / "home" and stat.S_IMODE(home.stat().st_mode) == 0o700
        assert os.umask(0o077) == 0o077, "the JVM a local session starts inherits an owner-only umask"
        (home / "landing").mkdir()
        (home / "landing" / "emails.csv").write_text("a@b.c\n")
        assert stat.S_IMODE((home / "landing").stat().st_mode) == 0o700
        assert stat.S_IMODE((home / "landing" / "emails.csv").stat().st_mode) == 0o600
    finally:
        os.umask(before)
