"""The data flows one way: no stage imports a later one, and only the pipeline layer acts on decisions."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "libs" / "lakeforge"
# Stages of the model half in data-flow order; each may import earlier ones only.
MODEL_STAGES = ["training_data", "training", "gate", "scoring", "monitoring"]
# The data half, landing to features, in the same order.
DATA_STAGES = ["landing", "bronze", "silver", "gold", "feature_store"]
ABOVE_THE_STAGES = {"pipeline", "simulation", "cli"}
# What the gate and the monitor share: the monitoring reference the gate saves and the monitor reads.
SHARED_BY_STAGES = {"reference"}


def _runtime_nodes(node: ast.AST):
    """Every node under `node` except what an `if TYPE_CHECKING:` block holds (never imported at run time)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
            yield from (n for orelse in child.orelse for n in [orelse, *_runtime_nodes(orelse)])
            continue
        yield child
        yield from _runtime_nodes(child)


def modules() -> set[str]:
    """The package's modules and subpackages (a subpackage such as `config` counts as one module)."""
    files = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    return files | {path.parent.name for path in PACKAGE.glob("*/__init__.py")}


def _sources(module: str) -> list[Path]:
    package = PACKAGE / module
    return sorted(package.glob("*.py")) if package.is_dir() else [PACKAGE / f"{module}.py"]


def lakeforge_imports(module: str) -> set[str]:
    """The other lakeforge modules `module` imports at run time, at the top or inside functions."""
    found = set()
    for source in _sources(module):
        found |= _imports(ast.parse(source.read_text()))
    return found - {module}


def _imports(tree: ast.AST) -> set[str]:
    found = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lakeforge"):
            if node.module == "lakeforge":
                found |= {alias.name for alias in node.names}
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lakeforge.")}
    return found


@pytest.mark.parametrize("stage", MODEL_STAGES)
def test_no_model_stage_imports_a_later_stage_or_the_layer_above(stage):
    later = set(MODEL_STAGES[MODEL_STAGES.index(stage) + 1 :]) | ABOVE_THE_STAGES
    assert lakeforge_imports(stage) & later == set()


@pytest.mark.parametrize("stage", DATA_STAGES)
def test_no_data_stage_imports_a_later_stage(stage):
    later = set(DATA_STAGES[DATA_STAGES.index(stage) + 1 :]) | set(MODEL_STAGES) | ABOVE_THE_STAGES
    assert lakeforge_imports(stage) & later == set()


def test_only_the_cli_and_the_simulation_import_the_pipeline_layer():
    importers = {module for module in modules() if "pipeline" in lakeforge_imports(module)}
    assert importers == {"cli", "simulation"}


def test_the_check_sees_imports_inside_functions():
    assert {"training", "gate", "monitoring"} <= lakeforge_imports("pipeline")
    assert "databricks_jobs" in lakeforge_imports("platforms")


def test_no_module_outside_the_stages_imports_a_stage():
    """So no stage reaches a later one through a helper (reference scores rows with `modeling`, not `scoring`)."""
    helpers = modules() - set(MODEL_STAGES) - ABOVE_THE_STAGES
    assert helpers >= SHARED_BY_STAGES | {"modeling", "tables", "tracking", "config", "policy"}
    reaching = {module: lakeforge_imports(module) & set(MODEL_STAGES) for module in helpers}
    assert {module: stages for module, stages in reaching.items() if stages} == {}


def test_the_gate_is_its_own_stage_and_data_expectations_keep_the_word_validate():
    assert "gate" in lakeforge_imports("pipeline") and "training" not in lakeforge_imports("gate")
    assert not (PACKAGE / "training.py").read_text().count("def validate")


def test_only_the_platform_asks_where_it_runs():
    """The platform kind (`spark.mode`), the Databricks runtime variable, the workspace tracking URI and the
    retraining trigger are read in `platforms` alone; config only declares them."""
    signs = (".spark.mode", "DATABRICKS_RUNTIME_VERSION", 'tracking_uri == "databricks"', "retraining.trigger ==")
    asking = {
        module
        for module in modules()
        for text in ["".join(source.read_text() for source in _sources(module))]
        if any(sign in text for sign in signs)
    }
    assert asking == {"platforms"}


def test_the_import_graph_has_no_loop():
    graph = {module: lakeforge_imports(module) - {"__version__"} for module in modules()}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in graph.get(start, set()):
            if module == target or (module not in seen and reaches(module, target, seen | {module})):
                return True
        return False

    assert [module for module in graph if reaches(module, module, {module})] == []


def test_no_module_shadows_the_standard_library():
    """`python libs/lakeforge/cli.py` (how spark-submit runs a job on a cluster) puts the package folder on
    sys.path: a module named like a standard one (`platform`) would replace it for every library."""
    import sys

    assert modules() & set(sys.stdlib_module_names) == set()


def test_config_is_a_package_that_imports_only_shared_helpers():
    """Use-case schema, environment schema and loading, each its own module; no stage, no validation."""
    assert {path.stem for path in _sources("config")} >= {"fields", "use_case", "environment", "settings", "loading"}
    assert lakeforge_imports("config") == {"errors", "globs", "table_ref"}


DELTA_COORDINATE = re.compile(r"io\.delta:delta-[\w.-]+:[\w.-]+")


def test_the_delta_jar_everywhere_is_the_one_the_installed_delta_spark_needs():
    from lakeforge.session import delta_package

    expected = delta_package()
    assert expected.endswith(":" + importlib.metadata.version("delta-spark"))
    readers = [REPO / "README.md", *REPO.glob("dags/*.py"), *REPO.glob("scripts/*.sh"), *REPO.glob("conf/**/*.yml")]
    named = {path: set(DELTA_COORDINATE.findall(path.read_text())) for path in readers}
    assert any(named.values()), "the check reads no file that names the jar"
    assert {path.name: found for path, found in named.items() if found - {expected}} == {}
    written = [path.name for path in REPO.glob("libs/**/*.py") if DELTA_COORDINATE.search(path.read_text())]
    assert written == [], "libs derive the coordinate; they never write it"


@pytest.mark.parametrize("script", sorted(path.stem for path in (REPO / "bench").glob("*.py")))
def test_every_benchmark_imports(script, monkeypatch):
    """Benchmarks run by hand: a rename in the package must not leave one that no longer starts."""
    import importlib

    monkeypatch.syspath_prepend(str(REPO / "bench"))
    module = importlib.import_module(script)
    assert callable(getattr(module, "main", None)) or script == "workspace"
