"""The Databricks asset bundle: valid against the CLI's JSON schema, and consistent with the package it deploys.

The schema is the one `databricks bundle schema` prints; it is not kept in this repository. It comes from
`$LAKEFORGE_BUNDLE_SCHEMA`, else `../shared/databricks/bundle-schema.json` beside the repository.
"""

from __future__ import annotations

import argparse
import ast
import copy
import fnmatch
import json
import os
import re
import sys
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, relevance

from lakeforge import cli, tracking
from lakeforge.config import load_settings
from lakeforge.policy import RetrainingDecision

REPO = Path(__file__).resolve().parents[1]
BUNDLE_FILE = REPO / "bundle.yml"
WORKFLOWS = REPO / ".github" / "workflows"
SCHEMA_ENV = "LAKEFORGE_BUNDLE_SCHEMA"
DEFAULT_SCHEMA = REPO.parent / "shared" / "databricks" / "bundle-schema.json"
# The schema's patterns use Unicode property classes, which Python's `re` lacks; these are equivalent.
UNICODE_CLASSES = ((r"[\\p{L}\\p{N}]", r"[^\\W_]"), (r"\\p{L}", r"[^\\W\\d_]"))
OPTIONAL_JOB_FILES = {"generate_data"}
TRAINING_JOB_REFERENCE = "${resources.jobs.train.id}"
VARIABLE_REFERENCE = re.compile(r"\$\{var\.([A-Za-z_][\w-]*)\}")
REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.-]*)\}")
RESOURCE_FIELD_REFERENCE = re.compile(r"\$\{resources\.(\w+)\.([\w-]+)\.(\w+)\}")
JOB_PARAMETER_REFERENCE = re.compile(r"\{\{job\.parameters\.([\w-]+)\}\}")
RESOURCE_REFERENCE = re.compile(r"\$\{resources\.jobs\.([\w-]+)\.id\}")
TASK_VALUE_REFERENCE = re.compile(r"^\{\{tasks\.([\w-]+)\.values\.([\w-]+)\}\}$")
SECRET_PATTERNS = (
    re.compile(r"dapi[0-9a-f]{32}"),  # personal access token
    re.compile(r"dose[0-9a-f]{32}"),  # OAuth client secret
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)
SECRET_KEYS = {"token", "password", "client_secret", "secret", "pat", "api_key"}


@dataclass(frozen=True)
class Bundle:
    """The bundle root merged with its included files, and which file declared each job."""

    doc: dict[str, Any]
    files: list[Path]
    job_sources: dict[str, Path]

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job, top-level or declared for a target only (such a job is the same in each target)."""
        found = dict(self.doc.get("resources", {}).get("jobs", {}))
        for target in self.doc.get("targets", {}).values():
            for key, job in ((target or {}).get("resources", {}).get("jobs", {})).items():
                found.setdefault(key, job)
        return found

    def tasks(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(job key, job, task) for every task of every job."""
        for key, job in self.jobs().items():
            for task in job.get("tasks", []):
                yield key, job, task

    def path(self, job_key: str, relative: str) -> Path:
        """A path named in a job, resolved like the CLI does: relative to the file that declares the job."""
        return (self.job_sources[job_key].parent / relative).resolve()


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: expected a mapping at the top"
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any], where: str = "") -> None:
    """Merge `extra` into `base` as the CLI merges included files: mappings deeply, sequences appended."""
    for key, value in extra.items():
        dotted = f"{where}.{key}" if where else key
        if key not in base:
            base[key] = copy.deepcopy(value)
        elif isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, dotted)
        elif isinstance(base[key], list) and isinstance(value, list):
            base[key].extend(copy.deepcopy(value))
        elif base[key] != value:
            pytest.fail(f"bundle: '{dotted}' is set to different values in two files")


def _declared_jobs(doc: dict[str, Any]) -> set[str]:
    keys = set(doc.get("resources", {}).get("jobs", {}))
    for target in doc.get("targets", {}).values():
        keys |= set((target or {}).get("resources", {}).get("jobs", {}))
    return keys


def load_bundle(root_file: Path = BUNDLE_FILE) -> Bundle:
    """Read the bundle root, expand its `include` globs and merge every included file into it."""
    doc = _read_yaml(root_file)
    files = [root_file]
    job_sources = {key: root_file for key in _declared_jobs(doc)}
    for pattern in doc.get("include", []):
        matched = sorted(root_file.parent.glob(pattern))
        assert matched, f"{root_file.name}: include '{pattern}' matches no file"
        for path in matched:
            included = _read_yaml(path)
            for key in _declared_jobs(included):
                assert key not in job_sources, f"job '{key}' is declared in {job_sources[key]} and in {path}"
                job_sources[key] = path
            _merge(doc, included)
            files.append(path)
    return Bundle(doc, files, job_sources)


def schema_path() -> Path:
    return Path(os.environ.get(SCHEMA_ENV) or DEFAULT_SCHEMA)


def load_schema(path: Path) -> dict[str, Any]:
    """The CLI's bundle schema, its Unicode property classes rewritten for Python's `re`."""
    if not path.is_file():
        pytest.fail(
            f"the Databricks bundle schema is not at {path}: set {SCHEMA_ENV} to the output of "
            "`databricks bundle schema` (CI does), or lay out ../shared/databricks/ beside the repository"
        )
    text = path.read_text()
    for unicode_class, python_class in UNICODE_CLASSES:
        text = text.replace(unicode_class, python_class)
    assert r"\\p{" not in text, f"{path}: a Unicode property class this test does not rewrite"
    return json.loads(text)


def _is_reference_alternative(schema: Any) -> bool:
    """The schema's `${var.x}` / `${resources...}` alternatives beside every typed value."""
    return isinstance(schema, dict) and schema.get("type") == "string" and schema.get("pattern", "").startswith(r"\$")


def leaf_errors(error: ValidationError) -> list[ValidationError]:
    """The innermost errors under a oneOf: the alternative meant for the value, not its `${...}` alternatives."""
    if not error.context:
        return [error]
    alternatives: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in error.context:
        alternatives[sub.relative_schema_path[0]].append(sub)
    meant = [
        errors
        for index, errors in alternatives.items()
        if not (isinstance(index, int) and _is_reference_alternative(error.validator_value[index]))
    ]
    fitting = [errors for errors in meant if not any(e.validator == "type" and not e.relative_path for e in errors)]
    chosen = fitting if len(fitting) == 1 else meant if len(meant) == 1 else []
    if not chosen:
        return [error]
    return [leaf for sub in sorted(chosen[0], key=relevance) for leaf in leaf_errors(sub)]


def schema_errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    """Every schema error in `doc`, one `json path: message` line per innermost error, best match last."""
    return [
        f"{leaf.json_path}: {leaf.message[:300]}"
        for error in sorted(validator.iter_errors(doc), key=relevance)
        for leaf in leaf_errors(error)
    ]


def job_command(path: Path) -> list[str]:
    """The CLI command a jobs/*.py file runs: the string literals before `*sys.argv[1:]` in `main([...])`."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "main" and node.args:
            literals = node.args[0].elts if isinstance(node.args[0], ast.List) else []
            return [e.value for e in literals if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    raise AssertionError(f"{path}: no call main([...]) found")


def console_scripts(setup_file: Path = REPO / "setup.py") -> dict[str, str]:
    """`entry_points["console_scripts"]` of setup.py as {name: target}, read without running setup.py."""
    for node in ast.walk(ast.parse(setup_file.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for keyword in node.keywords:
                if keyword.arg == "entry_points":
                    scripts = ast.literal_eval(keyword.value).get("console_scripts", [])
                    return dict(line.replace(" ", "").split("=", 1) for line in scripts)
    return {}


def secrets_in(value: Any, where: str = "") -> list[str]:
    """Paths of values that look like credentials, and of keys that would hold one."""
    found = []
    if isinstance(value, dict):
        for key, child in value.items():
            if str(key).lower() in SECRET_KEYS:
                found.append(f"{where}.{key}")
            found += secrets_in(child, f"{where}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += secrets_in(child, f"{where}[{index}]")
    elif isinstance(value, str) and any(p.search(value) for p in SECRET_PATTERNS):
        found.append(where)
    return found


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle()


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = load_schema(schema_path())
    # The schema leaves the top level open (files may hold YAML anchors there); this bundle keeps none, so a
    # misspelt top-level mapping is an error here rather than silently ignored.
    schema["additionalProperties"] = False
    # The schema declares no `$schema`; its `$defs` are 2019-09/2020-12 vocabulary.
    validator_class = validators.validator_for(schema, default=Draft202012Validator)
    return validator_class(schema)


@pytest.fixture(scope="module")
def variables(bundle: Bundle) -> dict[str, Any]:
    return {name: spec.get("default") for name, spec in bundle.doc.get("variables", {}).items()}


def target_variables(bundle: Bundle, target: str) -> dict[str, Any]:
    """Every variable's value in `target`: the target's own, else the default."""
    values = {name: spec.get("default") for name, spec in bundle.doc.get("variables", {}).items()}
    values.update((bundle.doc["targets"].get(target) or {}).get("variables", {}))
    return values


def resolve(value: Any, bundle: Bundle, target: str = "dev", job: dict[str, Any] | None = None) -> Any:
    """Substitute what the CLI substitutes before deploying, as it would for `target`.

    Variables (the target's value, else the default; a complex one whole), `${bundle.target}`,
    `${bundle.name}` and fields of declared resources (`${resources.<kind>.<key>.<field>}`; ids are known only
    after deploying and stay as written), and `{{job.parameters.x}}` with the job parameter's default.
    Development mode's name prefixes are the CLI's own and are not applied.
    """
    variables = target_variables(bundle, target)
    parameters = {p["name"]: p.get("default") for p in (job or {}).get("parameters", [])}

    def lookup(path: str) -> Any:
        head, *rest = path.split(".")
        if head == "var":
            return variables[rest[0]]
        if head == "bundle" and rest in (["target"], ["name"]):
            return target if rest == ["target"] else bundle.doc["bundle"]["name"]
        if head == "resources" and len(rest) == 3 and rest[2] != "id":
            return bundle.doc["resources"][rest[0]][rest[1]][rest[2]]
        return None

    def substitute(item: Any, depth: int = 0) -> Any:
        assert depth < 10, f"bundle: references in a cycle at {item!r}"
        if isinstance(item, dict):
            return {key: substitute(child, depth) for key, child in item.items()}
        if isinstance(item, list):
            return [substitute(child, depth) for child in item]
        if not isinstance(item, str):
            return item
        whole = REFERENCE.fullmatch(item)
        if whole and isinstance(lookup(whole.group(1)), dict | list):
            return substitute(lookup(whole.group(1)), depth + 1)

        def one(match: re.Match[str]) -> str:
            found = lookup(match.group(1))
            return match.group(0) if found is None else str(substitute(found, depth + 1))

        return JOB_PARAMETER_REFERENCE.sub(lambda m: str(parameters[m.group(1)]), REFERENCE.sub(one, item))

    return substitute(value)


def _task_command(bundle: Bundle, job_key: str, task: dict[str, Any]) -> list[str] | None:
    """The CLI arguments a task runs (command and parameters, unresolved), None for tasks that run no code."""
    if "spark_python_task" in task:
        spec = task["spark_python_task"]
        return [*job_command(bundle.path(job_key, spec["python_file"])), *spec.get("parameters", [])]
    if "python_wheel_task" in task:
        return list(task["python_wheel_task"].get("parameters", []))
    return None


def _step_tasks(bundle: Bundle, step: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job key, job, task) of the tasks that run `lakeforge run STEP`."""
    found = []
    for key, job, task in bundle.tasks():
        command = _task_command(bundle, key, task)
        if command and command[:2] == ["run", step]:
            found.append((key, job, task))
    return found


def test_bundle_matches_the_databricks_schema(bundle, validator):
    errors = schema_errors(validator, bundle.doc)
    assert not errors, "bundle does not match the Databricks schema:\n" + "\n".join(errors)


def test_missing_schema_fails_with_what_to_do(tmp_path):
    with pytest.raises(pytest.fail.Exception, match=SCHEMA_ENV):
        load_schema(tmp_path / "absent.json")


def _first_task(job: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda doc: doc["resources"]["jobs"][job]["tasks"][0]


MUTATIONS = {
    "misspelt top-level mapping": (
        lambda doc: doc.update(resource=doc["resources"]),
        "$",
        "'resource' was unexpected",
    ),
    "unknown task key": (
        lambda doc: _first_task("score")(doc).update(spark_python_taks={"python_file": "x.py"}),
        "$.resources.jobs.score.tasks[0]",
        "'spark_python_taks' was unexpected",
    ),
    "retries as words": (
        lambda doc: _first_task("score")(doc).update(max_retries="three"),
        "$.resources.jobs.score.tasks[0].max_retries",
        "'three' is not of type 'integer'",
    ),
    "reference to no known scope": (
        lambda doc: _first_task("score")(doc).update(max_retries="${env.retries}"),
        "$.resources.jobs.score.tasks[0].max_retries",
        "is not of type 'integer'",
    ),
    "condition operator misspelt": (
        lambda doc: doc["resources"]["jobs"]["monitor"]["tasks"][1]["condition_task"].update(op="EQUALS"),
        "$.resources.jobs.monitor.tasks[1].condition_task.op",
        "'EQUALS' is not one of",
    ),
    "task without a key": (
        lambda doc: _first_task("train")(doc).pop("task_key"),
        "$.resources.jobs.train.tasks[0]",
        "'task_key' is a required property",
    ),
    "unknown permission level": (
        lambda doc: doc["targets"]["prod"]["permissions"][0].update(level="CAN_DO_ANYTHING"),
        "$.targets.prod.permissions[0].level",
        "'CAN_DO_ANYTHING' is not one of",
    ),
    "schedule as a string": (
        lambda doc: doc["resources"]["jobs"]["score"].update(schedule="daily"),
        "$.resources.jobs.score.schedule",
        "'daily' is not of type 'object'",
    ),
}


@pytest.mark.parametrize(("mutate", "path", "message"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_schema_rejects_a_broken_bundle_and_says_where(bundle, validator, mutate, path, message):
    doc = copy.deepcopy(bundle.doc)
    mutate(doc)
    errors = schema_errors(validator, doc)
    assert any(e.startswith(path + ":") and message in e for e in errors), errors


def test_schema_accepts_variable_references_for_typed_values(bundle, validator):
    doc = copy.deepcopy(bundle.doc)
    _first_task("score")(doc).update(max_retries="${var.retries}", retry_on_timeout="${var.retry_on_timeout}")
    assert schema_errors(validator, doc) == []


def test_modes_are_ones_the_cli_knows(bundle):
    # The schema types `mode` as any string; the CLI accepts only these two.
    modes = {name: target.get("mode") for name, target in bundle.doc["targets"].items()}
    assert modes == {"dev": "development", "staging": "production", "prod": "production"}
    assert bundle.doc["targets"]["dev"].get("default") is True


def test_every_named_file_exists(bundle):
    assert len(bundle.files) > 1, "bundle.yml includes no resource file"
    for path in bundle.files[1:]:
        included = _read_yaml(path)
        targets = included.get("targets", {}).values()
        declared = [included.get("resources"), *((target or {}).get("resources") for target in targets)]
        assert any(declared), f"{path.name} declares no resource"
    for key, _, task in bundle.tasks():
        for kind, field in (("spark_python_task", "python_file"), ("notebook_task", "notebook_path")):
            if kind in task:
                path = bundle.path(key, task[kind][field])
                assert path.is_file(), f"job {key} task {task['task_key']}: {task[kind][field]} is not a file"


def test_wheel_libraries_are_built_by_a_bundle_artifact(bundle):
    wheels = {
        (REPO / spec["path"]).resolve()
        for spec in bundle.doc["artifacts"].values()
        if spec.get("type") == "whl" and ("-w dist" in spec.get("build", "") or "bdist_wheel" in spec.get("build", ""))
    }
    assert wheels, "no artifact of type whl builds a wheel into dist/"
    assert all((source / "setup.py").is_file() for source in wheels)
    for key, _, task in bundle.tasks():
        libraries = [lib["whl"] for lib in task.get("libraries", []) if "whl" in lib]
        if _task_command(bundle, key, task) is None:
            continue
        assert libraries, f"job {key} task {task['task_key']} does not install the lakeforge wheel"
        for library in libraries:
            path = bundle.path(key, library)
            assert path.parent in {source / "dist" for source in wheels}, f"job {key}: {library} is no built wheel"
            assert fnmatch.fnmatch(path.name, "*.whl"), library


def test_tasks_run_code_the_wheel_installs(bundle):
    scripts = console_scripts()
    assert scripts.get("lakeforge") == "lakeforge.cli:main"
    for key, _, task in bundle.tasks():
        if "python_wheel_task" in task:
            spec = task["python_wheel_task"]
            assert spec["package_name"] == "lakeforge"
            assert spec["entry_point"] in scripts, f"job {key}: entry point {spec['entry_point']} is not declared"
        if "spark_python_task" in task:
            source = bundle.path(key, task["spark_python_task"]["python_file"]).read_text()
            assert "from lakeforge.cli import main" in source, f"job {key}: the file does not run the lakeforge CLI"


def _task_settings(bundle: Bundle, target: str) -> Iterator[tuple[str, dict[str, Any], argparse.Namespace]]:
    """(job key, task, parsed CLI arguments) of every task that runs lakeforge code, resolved for `target`."""
    parser = cli.build_parser()
    for key, job, task in bundle.tasks():
        command = _task_command(bundle, key, task)
        if command is None:
            continue
        argv = resolve(command, bundle, target, job)
        try:
            yield key, task, parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"job {key} task {task['task_key']}: the lakeforge CLI refuses {argv}")


def test_task_parameters_parse_and_load_config(bundle):
    resources = resolve(bundle.doc["resources"], bundle)
    checked = 0
    for key, _, args in _task_settings(bundle, "dev"):
        if args.command == "run":
            assert set(args.steps) <= set(cli.STEPS), args
            settings = load_settings(args.use_case, args.env, overrides=args.set)
            assert settings.env.spark.mode == "databricks", f"job {key}: runs with --env {args.env}"
            assert settings.env.catalog == target_variables(bundle, "dev")["catalog"]
            assert settings.env.tracking.model_schema == resources["schemas"]["models"]["name"]
            assert tracking.experiment_name(settings) == resources["experiments"]["lakeforge"]["name"]
            model = resources["registered_models"]["lakeforge"]
            expected = f"{model['catalog_name']}.{model['schema_name']}.{model['name']}"
            assert tracking.registered_model_name(settings) == expected
        checked += 1
    assert checked >= 9


def test_the_declared_model_is_the_use_cases_own(bundle):
    variables = target_variables(bundle, "dev")
    settings = load_settings(variables["use_case"], "databricks")
    assert variables["model_name"] == settings.use_case.training.model_name


def deployment_identity(settings: Any) -> dict[str, str]:
    """What a deployment owns: its catalog and tables, its model (and so its aliases), experiment and files."""
    return {
        "catalog": settings.env.catalog,
        "table": settings.table("silver", next(iter(settings.use_case.sources))),
        "model": tracking.registered_model_name(settings),
        "experiment": tracking.experiment_name(settings),
        **{f"path {name}": settings.env.path(name) for name in ("landing", "reports", "gx_project", "artifacts")},
    }


def test_no_two_targets_share_a_table_a_model_an_experiment_or_files(bundle):
    owners: dict[tuple[str, str], str] = {}
    for target in bundle.doc["targets"]:
        identity: dict[str, str] = {}
        for key, _, args in _task_settings(bundle, target):
            settings = load_settings(args.use_case, args.env, overrides=args.set)
            # generate-data writes landing files only: its tracking settings are never read.
            owned = deployment_identity(settings)
            for name, value in owned.items() if args.command == "run" else []:
                assert identity.setdefault(name, value) == value, f"target {target}: job {key} has another {name}"
            for name in ("catalog", "path landing"):
                assert owned[name] == identity.get(name, owned[name]), f"target {target}: job {key} has another {name}"
        for thing in identity.items():
            assert thing not in owners, f"targets {owners.get(thing)} and {target} share {thing[0]} {thing[1]}"
            owners[thing] = target
    assert set(owners.values()) == set(bundle.doc["targets"])


def test_the_isolation_check_finds_two_targets_on_one_catalog(bundle):
    shared = copy.deepcopy(bundle)
    shared.doc["targets"]["staging"]["variables"]["catalog"] = target_variables(bundle, "prod")["catalog"]
    with pytest.raises(AssertionError, match="share catalog"):
        test_no_two_targets_share_a_table_a_model_an_experiment_or_files(shared)


def test_every_job_file_runs_in_the_bundle(bundle):
    run_by_tasks = {
        tuple(job_command(bundle.path(key, task["spark_python_task"]["python_file"])))
        for key, _, task in bundle.tasks()
        if "spark_python_task" in task
    } | {
        tuple(task["python_wheel_task"].get("parameters", [])[:2])
        for _, _, task in bundle.tasks()
        if "python_wheel_task" in task
    }
    for path in sorted((REPO / "jobs").glob("*.py")):
        if path.stem not in OPTIONAL_JOB_FILES:
            assert tuple(job_command(path)) in run_by_tasks, f"jobs/{path.name} is run by no task of the bundle"
    assert {("run", step) for step in cli.STEPS} <= run_by_tasks


@pytest.mark.parametrize(
    ("job", "order"),
    [("ingest", ["ingest", "silver", "gold"]), ("train", ["train", "gate"])],
)
def test_steps_run_in_order(bundle, job, order):
    tasks = {task["task_key"]: task for task in bundle.jobs()[job]["tasks"]}
    assert list(tasks) == order
    for before, after in zip(order, order[1:], strict=False):
        assert [d["task_key"] for d in tasks[after].get("depends_on", [])] == [before]


def test_monitor_starts_training_only_when_the_retrain_value_is_true(bundle):
    (job_key, job, monitor_task), *others = _step_tasks(bundle, "monitor")
    assert not others and job_key == "monitor"
    parameters = monitor_task["spark_python_task"]["parameters"]
    # The condition task starts training; the monitor step must only record its decision.
    assert "env.retraining.trigger=record" in parameters
    tasks = {task["task_key"]: task for task in job["tasks"]}
    conditions = [t for t in tasks.values() if "condition_task" in t]
    assert len(conditions) == 1
    condition = conditions[0]
    reference = TASK_VALUE_REFERENCE.match(condition["condition_task"]["left"])
    assert reference and reference.groups() == (monitor_task["task_key"], "retrain")
    assert condition["condition_task"]["op"] == "EQUAL_TO" and condition["condition_task"]["right"] == "true"
    assert [d["task_key"] for d in condition["depends_on"]] == [monitor_task["task_key"]]
    (retrain,) = [t for t in tasks.values() if "run_job_task" in t]
    assert retrain["run_job_task"]["job_id"] == TRAINING_JOB_REFERENCE
    assert retrain["depends_on"] == [{"task_key": condition["task_key"], "outcome": "true"}]


@pytest.mark.parametrize(("retrain", "expected"), [(True, "true"), (False, "false")])
def test_monitor_publishes_the_value_the_condition_reads(bundle, monkeypatch, retrain, expected):
    from lakeforge import monitoring

    published = {}
    task_values = types.SimpleNamespace(set=lambda key, value: published.update({key: value}))
    runtime = types.ModuleType("databricks.sdk.runtime")
    runtime.dbutils = types.SimpleNamespace(jobs=types.SimpleNamespace(taskValues=task_values))
    monkeypatch.setitem(sys.modules, "databricks.sdk.runtime", runtime)
    (job_key, job, task), *_ = _step_tasks(bundle, "monitor")
    args = cli.build_parser().parse_args(resolve(_task_command(bundle, job_key, task), bundle, job=job))
    settings = load_settings(args.use_case, args.env, overrides=args.set)
    monitoring.publish_task_value(settings, RetrainingDecision(retrain=retrain, reasons=["drift"]))
    condition = next(t["condition_task"] for t in job["tasks"] if "condition_task" in t)
    _, key = TASK_VALUE_REFERENCE.match(condition["left"]).groups()
    assert published == {key: expected}
    assert (published[key] == condition["right"]) is retrain


def test_references_name_declared_variables_and_resources(bundle, variables):
    text = json.dumps(bundle.doc)
    assert set(VARIABLE_REFERENCE.findall(text)) <= set(variables)
    assert set(RESOURCE_REFERENCE.findall(text)) <= set(bundle.jobs())
    for kind, key, field in RESOURCE_FIELD_REFERENCE.findall(text):
        declared = bundle.doc["resources"].get(kind, {}).get(key)
        assert declared is not None, f"${{resources.{kind}.{key}.{field}}} names no declared resource"
        assert field == "id" or field in declared, f"${{resources.{kind}.{key}.{field}}}: the resource sets no {field}"
    for target in bundle.doc["targets"]:
        assert set(target_variables(bundle, target)) == set(variables), f"target {target} sets an undeclared variable"


def test_score_runs_daily_in_utc(bundle):
    schedule = bundle.jobs()["score"]["schedule"]
    seconds, minutes, hours, day_of_month, month, day_of_week, *year = schedule["quartz_cron_expression"].split()
    assert all(field.isdigit() for field in (seconds, minutes, hours)), "one fixed time a day"
    assert (day_of_month, month, day_of_week) in {("*", "*", "?"), ("?", "*", "*")} and year in ([], ["*"])
    assert schedule["timezone_id"] == "UTC"


def test_spark_tasks_run_on_the_one_classic_ml_cluster_with_limits(bundle, variables):
    assert "-ml-" in variables["spark_version"], "Spark ML needs a Databricks ML runtime"
    cluster = resolve("${var.cluster}", bundle)
    assert cluster["spark_version"] == variables["spark_version"]
    assert cluster["node_type_id"] == variables["node_type_id"]
    assert cluster["spark_env_vars"]["LAKEFORGE_CONF"] == "${workspace.file_path}/conf"
    for key, job, task in bundle.tasks():
        if "condition_task" in task:
            continue
        assert task.get("timeout_seconds", 0) > 0, f"job {key} task {task['task_key']} has no timeout"
        if _task_command(bundle, key, task) is None:
            continue
        assert "max_retries" in task, f"job {key} task {task['task_key']}"
        clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job.get("job_clusters", [])}
        assert task.get("job_cluster_key") in clusters, f"job {key} task {task['task_key']} runs on no job cluster"
        assert clusters[task["job_cluster_key"]] == "${var.cluster}", f"job {key}: a cluster of its own"
        assert job.get("max_concurrent_runs") == 1, f"job {key}: concurrent runs would race on the same tables"


def test_production_targets_restrict_who_runs_and_sees_the_jobs(bundle):
    targets = bundle.doc["targets"]
    assert targets["prod"]["run_as"] == {"service_principal_name": "${var.service_principal}"}
    for name in ("staging", "prod"):
        target = targets[name]
        # Without an explicit root_path the CLI refuses (or warns about) a production deployment.
        assert "${bundle.target}" in target["workspace"]["root_path"]
        levels = {(p.get("group_name"), p["level"]) for p in target["permissions"]}
        assert {("${var.engineers_group}", "CAN_MANAGE"), ("${var.analysts_group}", "CAN_VIEW")} <= levels, name
    assert "generate_data" not in targets["prod"].get("resources", {}).get("jobs", {}), "no demo data in prod"


def test_bundle_and_workflows_hold_no_secrets(bundle):
    assert secrets_in(bundle.doc) == []
    assert "host" not in bundle.doc.get("workspace", {})
    assert all("host" not in (t.get("workspace") or {}) for t in bundle.doc["targets"].values())
    for path in [*bundle.files, *sorted(WORKFLOWS.glob("*.yml"))]:
        text = path.read_text()
        assert not any(p.search(text) for p in SECRET_PATTERNS), f"{path} holds what looks like a credential"


@pytest.mark.parametrize(
    "leak",
    [
        {"workspace": {"token": "x"}},
        {"resources": {"jobs": {"j": {"tasks": [{"parameters": ["--key", "dapi" + "0123456789abcdef" * 2]}]}}}},
    ],
)
def test_secret_check_finds_a_leak(leak):
    assert secrets_in(leak) != []


def workflow_problems(workflow: dict) -> list[str]:
    """Jobs that read a PROD_* secret outside the `prod` environment, and actions not pinned to a commit."""
    problems = []
    for name, job in (workflow.get("jobs") or {}).items():
        environment = job.get("environment")
        environment = environment.get("name") if isinstance(environment, dict) else environment
        if "secrets.PROD_" in yaml.safe_dump(job) and environment != "prod":
            problems.append(f"job {name} reads a PROD_* secret without environment: prod")
        for step in job.get("steps") or []:
            action = step.get("uses", "")
            if action and not action.startswith("./") and not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action):
                problems.append(f"job {name} uses {action}: pin it to a commit SHA")
    return problems


def test_prod_credentials_stay_behind_the_prod_environment_and_actions_are_pinned():
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in workflows} == {"ci.yml", "deploy.yml"}
    for path in workflows:
        assert workflow_problems(yaml.safe_load(path.read_text())) == [], path
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    assert ci["jobs"]["validate-prod"]["if"] == "github.event_name != 'pull_request'"


@pytest.mark.parametrize(
    ("job", "problem"),
    [
        ({"steps": [{"run": "x", "env": {"T": "${{ secrets.PROD_DATABRICKS_TOKEN }}"}}]}, "without environment: prod"),
        ({"environment": "staging", "env": {"T": "${{ secrets.PROD_X }}"}, "steps": []}, "without environment: prod"),
        ({"steps": [{"uses": "actions/checkout@v4"}]}, "pin it to a commit SHA"),
        ({"steps": [{"uses": "databricks/setup-cli@main"}]}, "pin it to a commit SHA"),
    ],
)
def test_the_workflow_check_finds_each_kind_of_problem(job, problem):
    assert [p for p in workflow_problems({"jobs": {"j": job}}) if problem in p]
    assert workflow_problems({"jobs": {"j": {**job, "environment": {"name": "prod"}}}}) == [] or "pin" in problem
