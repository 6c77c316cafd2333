"""Config loads into typed objects, and every mistake names the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lakeforge.config import check_identifier, conf_dir, load_environment, load_settings, load_use_case
from lakeforge.errors import ConfigError
from lakeforge.session import spark_conf
from lakeforge.table_ref import TableRef

CONF = Path(__file__).resolve().parents[1] / "conf"


def _write_use_case(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((CONF / "usecases" / "churn.yml").read_text())
    mutate(data)
    (tmp_path / "usecases").mkdir()
    (tmp_path / "usecases" / "churn.yml").write_text(yaml.safe_dump(data))
    return tmp_path


@pytest.mark.parametrize("use_case", ["churn", "maintenance"])
@pytest.mark.parametrize("env", ["local", "cluster", "databricks"])
def test_shipped_config_loads(use_case, env):
    settings = load_settings(use_case, env)
    assert settings.use_case.name == use_case
    assert settings.env.spark.mode == env


def test_table_names_follow_the_catalog():
    local = load_settings("churn", "local")
    databricks = load_settings("churn", "databricks")
    assert local.table("gold", "daily_revenue") == "`gold`.`daily_revenue`"
    assert databricks.table("gold", "daily_revenue") == "`lakeforge`.`gold`.`daily_revenue`"


def test_a_table_reference_has_its_three_forms_and_reads_each_back():
    import pickle

    settings = load_settings("churn", "local")
    local, unity = settings.table_ref("gold", "daily_revenue"), TableRef("gold", "t", "lakeforge")
    assert type(settings.table("gold", "daily_revenue")) is str and settings.table("gold", "daily_revenue") == local
    assert (local.sql, local.plain, local.three_part) == (
        "`gold`.`daily_revenue`",
        "gold.daily_revenue",
        "spark_catalog.gold.daily_revenue",
    )
    assert (unity.sql, unity.plain, unity.three_part) == (
        "`lakeforge`.`gold`.`t`",
        "lakeforge.gold.t",
        "lakeforge.gold.t",
    )
    for form in (local.sql, local.plain, local.three_part):
        parsed = TableRef.parse(form)
        assert (parsed.schema, parsed.name) == ("gold", "daily_revenue")
    assert TableRef.parse(local.three_part).catalog == "spark_catalog" and local.catalog is None
    assert (
        f"SELECT * FROM {local}" == "SELECT * FROM `gold`.`daily_revenue`" and {local: 1}["`gold`.`daily_revenue`"] == 1
    )
    assert pickle.loads(pickle.dumps(unity)).plain == "lakeforge.gold.t"
    for bad in ("daily_revenue", "a.b.c.d", "gold..x"):
        with pytest.raises(ValueError, match="is not a table name"):
            TableRef.parse(bad)


def test_model_names_follow_the_registry():
    from lakeforge.tracking import registered_model_name

    assert registered_model_name(load_settings("churn", "local")) == "churn_classifier"
    assert registered_model_name(load_settings("churn", "databricks")) == "lakeforge.models.churn_classifier"


def _drop_key(data):
    del data["sources"]["orders"]["key"]


def _bad_type(data):
    data["sources"]["orders"]["columns"]["amount"] = "money"


def _reserved_column(data):
    data["sources"]["orders"]["columns"]["_source_file"] = "string"


def _injection(data):
    data["sources"]["orders; DROP TABLE x"] = data["sources"].pop("orders")


def _unknown_expectation(data):
    data["sources"]["orders"]["expectations"][0]["type"] = "expect_column_values_to_be_purple"


def _bad_action(data):
    data["sources"]["orders"]["expectations"][0]["action"] = "ignore"


def _missing_transform(data):
    data["gold"]["daily_revenue"]["transform"] = "lakeforge.usecases.churn:no_such_function"


def _unknown_input(data):
    data["gold"]["daily_revenue"] = {"inputs": ["payments"], "sql": "SELECT count(*) AS n FROM payments"}


def _transform_input_mismatch(data):
    data["gold"]["daily_revenue"]["inputs"] = ["payments"]


def _typo_key(data):
    data["sources"]["orders"]["colums"] = data["sources"]["orders"].pop("columns")


def _feature_source_missing(data):
    data["features"]["tables"]["customer_profile"]["sources"] = ["gold.customers"]


def _feature_source_bad_layer(data):
    data["features"]["tables"]["customer_activity"]["sources"] = ["platinum.orders"]


def _feature_transform_missing(data):
    data["features"]["tables"]["ticket_text"]["transform"] = "lakeforge.usecases.churn:no_text_here"


def _feature_param_unknown(data):
    data["features"]["tables"]["customer_activity"]["params"]["window_weeks"] = [1]


def _feature_time_column_unknown_source(data):
    data["features"]["tables"]["customer_activity"]["time_columns"]["payments"] = "paid_at"


def _labels_source_missing(data):
    data["features"]["labels"]["sources"] = ["silver.customers", "gold.cancellations"]


def _labels_source_unexpected(data):
    data["features"]["labels"]["sources"] = ["gold.cancellation_facts"]


def _split_dates_and_days(data):
    data["training"]["split"].update({"validation_from": "2026-02-05", "test_from": "2026-02-12", "test_days": 14})


def _split_half_relative(data):
    data["training"]["split"] = {"test_days": 14}


def _split_unordered(data):
    data["training"]["split"] = {"validation_from": "2026-02-12", "test_from": "2026-02-05"}


def _split_negative_days(data):
    data["training"]["split"] = {"validation_days": 7, "test_days": 0}


def _drift_rule_unknown_feature(data):
    data["monitoring"]["features"] = {"orders_99d": {"decides": False}}


def _drift_rule_typo(data):
    data["monitoring"]["features"] = {"orders_90d": {"decide": False}}


def _policy_bad_on_drift(data):
    data["monitoring"]["retraining"]["on_drift"] = "panic"


@pytest.mark.parametrize(
    ("mutate", "key", "message"),
    [
        (_split_dates_and_days, "training.split", "give dates or durations, not both: test_from, validation_from"),
        (_split_half_relative, "training.split", "a relative split needs validation_days and test_days"),
        (_split_unordered, "training.split", "validation_from must come before test_from"),
        (_split_negative_days, "training.split.test_days", "greater than or equal to 1"),
        (_drift_rule_unknown_feature, "<root>", "monitoring.features names orders_99d: not a numeric or categorical"),
        (_drift_rule_typo, "monitoring.features.orders_90d.decide", "Extra inputs are not permitted"),
        (_policy_bad_on_drift, "monitoring.retraining.on_drift", "'retrain' or 'alert'"),
        (_feature_source_missing, "<root>", "'customer_profile' reads gold.customers, but no gold table 'customers'"),
        (_feature_source_bad_layer, "features.tables.customer_activity.sources.0", "must look like 'layer.table'"),
        (_feature_transform_missing, "features.tables.ticket_text.transform", "no function 'no_text_here'"),
        (_feature_param_unknown, "features.tables.customer_activity", "cannot be called with inputs"),
        (_feature_time_column_unknown_source, "features.tables.customer_activity", "time_columns names 'payments'"),
        (_labels_source_missing, "<root>", "'labels' reads gold.cancellations, but no gold table 'cancellations'"),
        (_labels_source_unexpected, "features.labels", "cannot be called with inputs"),
        (_drop_key, "sources.orders.key", "Field required"),
        (_bad_type, "sources.orders.columns", "has type 'money'"),
        (_reserved_column, "sources.orders.columns", "'_source_file' starts with '_'"),
        (_injection, "sources.orders; DROP TABLE x", "not a valid identifier"),
        (_bad_action, "sources.orders.expectations.0.action", "'warn', 'quarantine' or 'fail'"),
        (_missing_transform, "gold.daily_revenue.transform", "no function 'no_such_function'"),
        (_unknown_input, "<root>", "reads 'payments', which is not a source"),
        (_transform_input_mismatch, "gold.daily_revenue", "cannot be called with inputs ['payments']"),
        (_typo_key, "sources.orders.columns", "Field required"),
    ],
)
def test_config_errors_name_file_key_and_expectation(tmp_path, mutate, key, message):
    directory = _write_use_case(tmp_path, mutate)
    with pytest.raises(ConfigError) as error:
        load_use_case("churn", directory)
    assert error.value.file == str(directory / "usecases" / "churn.yml")
    assert error.value.key == key
    assert message in error.value.expected


def _three_mistakes(data):
    data["sources"]["orders"]["columns"]["amount"] = "money"
    data["training"]["max_evals"] = "many"
    data["monitoring"]["drift_table"] = "drift metrics"


def test_every_mistake_of_a_file_is_named_in_one_run(tmp_path):
    directory = _write_use_case(tmp_path, _three_mistakes)
    with pytest.raises(ConfigError) as error:
        load_use_case("churn", directory)
    keys = [error.value.key, *(key for key, _ in error.value.more)]
    assert keys == ["sources.orders.columns", "training.max_evals", "monitoring.drift_table"]
    message = str(error.value)
    assert message.startswith(f"{directory / 'usecases' / 'churn.yml'} (3 mistakes): key 'sources.orders.columns'")
    assert "key 'training.max_evals': Input should be a valid integer" in message
    assert "key 'monitoring.drift_table': Value error, 'drift metrics' is not a valid identifier" in message


def _wrong_expectation_argument(data):
    data["sources"]["orders"]["expectations"][1]["kwargs"] = {"colour": "purple"}


def test_config_loads_without_great_expectations_and_validation_names_every_unknown_expectation(tmp_path):
    """Config checks an expectation's shape only; `validation.check_expectations` (run before a step that
    validates) builds each with GX and names the file and every wrong entry."""
    from lakeforge.validation import check_expectations

    directory = _write_use_case(tmp_path, lambda data: (_unknown_expectation(data), _wrong_expectation_argument(data)))
    use_case = load_use_case("churn", directory)
    assert use_case.sources["orders"].expectations[0].type == "expect_column_values_to_be_purple"
    with pytest.raises(ConfigError) as error:
        check_expectations(use_case, str(directory / "usecases" / "churn.yml"))
    assert error.value.file == str(directory / "usecases" / "churn.yml")
    assert error.value.key == "sources.orders.expectations.0"
    assert "not a Great Expectations expectation" in error.value.expected
    assert [key for key, _ in error.value.more] == ["sources.orders.expectations.1"]
    assert "does not accept ['colour'" in error.value.more[0][1]
    check_expectations(load_use_case("churn"))  # the shipped use case builds


def test_the_config_package_imports_no_great_expectations_and_no_stage():
    """Loading config in a fresh interpreter leaves GX (seconds of import) and every stage unimported."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, sys, lakeforge.config as c; c.load_settings('churn', 'local'); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('great_expectations', 'lakeforge.')))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    modules = set(json.loads(loaded))
    assert not {m for m in modules if m.startswith("great_expectations")}
    stages = {"validation", "bronze", "silver", "gold", "feature_store", "training_data", "training", "gate"}
    stages |= {"scoring", "monitoring", "pipeline"}
    assert {m.split(".")[1] for m in modules} & stages == set()
    assert {"lakeforge.config.loading", "lakeforge.usecases.churn"} <= modules  # the probe did load config


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_environment("nowhere", tmp_path)
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "broken.yml").write_text("spark: [unclosed\n")
    with pytest.raises(ConfigError, match="valid YAML"):
        load_environment("broken", tmp_path)


def test_environment_rejects_unknown_spark_mode(tmp_path):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "odd.yml").write_text("spark: {mode: kubernetes}\n")
    with pytest.raises(ConfigError) as error:
        load_environment("odd", tmp_path)
    assert error.value.key == "spark.mode"


def test_paths_name_the_catalog_of_the_environment(tmp_path):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "uc.yml").write_text(
        "spark: {mode: databricks}\npaths:\n  landing: /Volumes/{catalog}/raw/in\n"
    )
    assert load_environment("uc", tmp_path, {"catalog": "lakeforge_staging"}).path("landing") == (
        "/Volumes/lakeforge_staging/raw/in"
    )
    with pytest.raises(ConfigError, match=r"paths landing name \{catalog\}, and no catalog is set"):
        load_environment("uc", tmp_path)


@pytest.mark.parametrize("name", ["gold", "_x1", "daily_revenue"])
def test_identifiers_accepted(name):
    assert check_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a.b", "x`y", "t; DROP TABLE y", "a b"])
def test_identifiers_rejected(name):
    with pytest.raises(ValueError):
        check_identifier(name)


def test_set_overrides_are_typed_and_validated():
    overrides = ["env.catalog=main", "use_case.training.max_evals=3", "env.retraining.wait=false"]
    settings = load_settings("churn", "databricks", overrides=overrides)
    assert (settings.env.catalog, settings.use_case.training.max_evals, settings.env.retraining.wait) == (
        "main",
        3,
        False,
    )
    with pytest.raises(ConfigError, match=r"local.yml: key 'retraining.trigger': Input should be 'local'"):
        load_settings("churn", "local", overrides=["env.retraining.trigger=bogus"])
    with pytest.raises(ConfigError, match="env.KEY=VALUE or use_case.KEY=VALUE"):
        load_settings("churn", "local", overrides=["catalog=main"])
    with pytest.raises(ConfigError, match=r"key 'env.catalog; DROP TABLE x'"):
        load_settings("churn", "local", overrides=["env.catalog; DROP TABLE x"])


def test_set_overrides_name_a_spark_setting_by_its_whole_dotted_name():
    overrides = ["env.spark.conf.spark.sql.shuffle.partitions=2", "env.spark.conf.spark.sql.ansi.enabled=true"]
    settings = load_settings("churn", "shared", overrides=overrides)
    # One key each, kept as the strings Spark reads, beside the file's other settings; not nested mappings.
    from_file = load_environment("shared").spark.conf
    assert from_file["spark.sql.shuffle.partitions"] == "8" and "spark.sql.ansi.enabled" not in from_file
    expected = {**from_file, "spark.sql.shuffle.partitions": "2", "spark.sql.ansi.enabled": "true"}
    assert settings.env.spark.conf == expected
    assert spark_conf(settings.env, "job")["spark.sql.shuffle.partitions"] == "2"  # what the session is built with
    with pytest.raises(ConfigError, match=r"shared.yml: key 'spark.conf.'"):
        load_settings("churn", "shared", overrides=["env.spark.conf.=2"])


def test_a_relative_split_resolves_back_from_the_newest_label_and_moves_with_it():
    import datetime as dt

    from lakeforge.config import TimeSplit

    relative = TimeSplit(train_days=28, validation_days=7, test_days=14)
    resolved = relative.resolve(dt.date(2026, 2, 19))
    assert resolved == TimeSplit(
        train_from=dt.date(2026, 1, 2),
        validation_from=dt.date(2026, 1, 30),
        test_from=dt.date(2026, 2, 6),
        test_until=dt.date(2026, 2, 20),
    )
    later = relative.resolve(dt.date(2026, 2, 26))
    assert (later.train_from, later.test_until) == (dt.date(2026, 1, 9), dt.date(2026, 2, 27))
    assert not resolved.relative and resolved.resolve(dt.date(2030, 1, 1)) == resolved  # fixed dates stay
    assert TimeSplit(validation_days=7, test_days=7).resolve(dt.date(2026, 2, 19)).train_from is None


@pytest.mark.parametrize("env", ["local", "cluster", "shared", "databricks"])
def test_an_environment_file_states_only_what_differs_from_the_defaults(env):
    """Schemas, paths, tracking and retraining default in `config.Environment`: a file that repeats a
    default is a copy that can drift from it."""
    from lakeforge.config import Environment

    raw = yaml.safe_load((conf_dir() / "envs" / f"{env}.yml").read_text())
    defaults = Environment(name=env, spark={"mode": "local"})
    repeated = [
        f"{section}.{key}"
        for section in ("schemas", "paths", "tracking", "retraining")
        for key, value in (raw.get(section) or {}).items()
        if getattr(getattr(defaults, section), key) == value
    ]
    assert repeated == []
    assert load_environment(env).schemas == defaults.schemas


def test_an_environment_extends_another_key_by_key(tmp_path):
    """`shared` is `local` plus the metastore settings: nested mappings merge, values replace, and the
    overlay's own name and `--set` overrides apply on top."""
    local, shared = load_environment("local"), load_environment("shared")
    assert shared.name == "shared" and shared.spark.mode == local.spark.mode == "local"
    assert shared.spark.master == local.spark.master
    assert shared.spark.conf["spark.sql.shuffle.partitions"] == local.spark.conf["spark.sql.shuffle.partitions"]
    assert shared.spark.conf["spark.hadoop.javax.jdo.option.ConnectionDriverName"] == "org.postgresql.Driver"
    envs = tmp_path / "envs"
    envs.mkdir()
    (envs / "base.yml").write_text("spark: {mode: local, conf: {a: '1', b: '2'}}\npaths: {landing: /in}\n")
    (envs / "mid.yml").write_text("extends: base\nspark: {conf: {b: '3'}}\n")
    (envs / "top.yml").write_text("extends: mid\npaths: {reports: /out}\n")
    top = load_environment("top", tmp_path, {"spark.conf.c": "4"})
    assert top.spark.conf == {"a": "1", "b": "3", "c": "4"}
    assert (top.paths.landing, top.paths.reports, top.name) == ("/in", "/out", "top")


@pytest.mark.parametrize(
    ("files", "key", "message"),
    [
        ({"a": "extends: b\n", "b": "extends: a\n"}, "extends", "no loop, but a -> b -> a"),
        ({"a": "extends: a\n"}, "extends", "no loop, but a -> a"),
        ({"a": "extends: [b]\n"}, "extends", "the name of another environment file"),
        ({"a": "extends: nowhere\n"}, "<file>", "the file does not exist"),
        ({"a": "extends: b\nspark: {mode: local, colour: red}\n", "b": "tracking: {}\n"}, "spark.colour", "Extra"),
    ],
)
def test_a_wrong_extends_names_the_file_and_the_chain(tmp_path, files, key, message):
    envs = tmp_path / "envs"
    envs.mkdir()
    for name, text in files.items():
        (envs / f"{name}.yml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_environment("a", tmp_path)
    assert (error.value.key, message in error.value.expected) == (key, True), error.value
