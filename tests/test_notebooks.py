"""Every notebook runs top to bottom in a real Jupyter kernel against the tables the Airflow DAG run wrote
(`pipeline_run`), and fails on any cell error; each is a clean nbformat 4 notebook with a parameters cell."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, pipeline_run, tmp_path):
    home, _, _ = pipeline_run
    notebook = nbformat.read(path, as_version=4)
    env = {
        **os.environ,
        "LAKEFORGE_HOME": str(home),
        "LAKEFORGE_PARAM_MAX_EVALS": "2",
        "LAKEFORGE_PARAM_SAMPLE_ROWS": "50",
        "PYSPARK_PYTHON": sys.executable,
        "MPLBACKEND": "Agg",
    }
    client = NotebookClient(notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a cell did not run"
    assert not any(o.output_type == "error" for cell in code for o in cell.outputs)
