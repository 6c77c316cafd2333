"""Every notebook runs top to bottom in a real Jupyter kernel against the tables the Airflow DAG run wrote
(`pipeline_run`), and fails on any cell error; each is a clean nbformat 4 notebook with a parameters cell.

The notebooks share one kernel, as notebooks attached to one Databricks cluster share its Spark: the first
starts the session, the others get it from `open_notebook` (SparkSession.getOrCreate). Each notebook
starts from an empty namespace (`%reset -f`), so one that needs a variable another defined still fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import FEW_ITERATIONS

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert [n.stem for n in NOTEBOOKS] == [
        "01_explore_tables",
        "02_training_set",
        "03_hyperopt_experiment",
        "04_monitoring",
        "05_score_sample",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_format_and_parameters(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4 and notebook.metadata.kernelspec.name == "python3"
    first, second = notebook.cells[:2]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert second.metadata.get("tags") == ["parameters"] and "open_notebook(" in second.source
    assert "dbutils" not in "".join(cell.source for cell in notebook.cells), "parameters go through lakeforge.notebook"
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "commit without outputs"


@pytest.fixture(scope="module")
def kernel(pipeline_run, tmp_path_factory):
    """One python3 kernel for every notebook; the first notebook's client starts it with this environment."""
    home, _, _ = pipeline_run
    manager = AsyncKernelManager(kernel_name="python3")
    env = {
        **os.environ,
        "LAKEFORGE_HOME": str(home),
        "LAKEFORGE_PARAM_MAX_EVALS": "2",
        "LAKEFORGE_PARAM_MAX_ITER": str(FEW_ITERATIONS["maxIter"]),
        "LAKEFORGE_PARAM_SAMPLE_ROWS": "50",
        "PYSPARK_PYTHON": sys.executable,
        "MPLBACKEND": "Agg",
    }
    yield manager, {"env": env, "cwd": str(tmp_path_factory.mktemp("notebooks"))}
    if manager.has_kernel:
        run_sync(manager.shutdown_kernel)(now=True)


def _execute(notebook, kernel) -> None:
    """Run every cell in the shared kernel after emptying its namespace; raises CellExecutionError on an error."""
    manager, start = kernel
    notebook.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
    NotebookClient(notebook, km=manager, timeout=900, kernel_name="python3").execute(**start)
    assert notebook.cells.pop(0).execution_count, "the namespace was not reset"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, kernel):
    notebook = nbformat.read(path, as_version=4)
    _execute(notebook, kernel)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a cell did not run"
    assert not any(o.output_type == "error" for cell in code for o in cell.outputs)


def test_a_notebook_does_not_see_what_the_one_before_it_defined(kernel):
    _execute(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("left_behind = 1")]), kernel)
    with pytest.raises(CellExecutionError, match="NameError"):
        _execute(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("left_behind")]), kernel)
