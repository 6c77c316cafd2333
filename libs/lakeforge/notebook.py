"""The one notebook helper: parameters at the top of a notebook, and its settings and Spark session.

On Databricks each parameter is a text widget (created with its default, read back as the user set
it); elsewhere it comes from the environment variable `LAKEFORGE_PARAM_<NAME>` (how the tests and a
scheduler pass values) or keeps its default. Notebooks never call `dbutils` themselves.

    from lakeforge.notebook import open_notebook
    nb = open_notebook(use_case="churn", env="local", cutoff="2026-02-05")
    nb.spark, nb.settings, nb.params["cutoff"]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lakeforge import platforms
from lakeforge.config import Settings, load_settings
from lakeforge.logs import configure_logging

ENV_PREFIX = "LAKEFORGE_PARAM_"


def parameters(**defaults: str) -> dict[str, str]:
    """Each parameter's value: a Databricks widget, else LAKEFORGE_PARAM_<NAME>, else the default."""
    dbutils = platforms.dbutils()
    values = {}
    for name, default in defaults.items():
        if dbutils is not None:
            dbutils.widgets.text(name, str(default))
            values[name] = dbutils.widgets.get(name)
        else:
            values[name] = os.environ.get(f"{ENV_PREFIX}{name.upper()}", str(default))
    return values


@dataclass(frozen=True)
class Notebook:
    params: dict[str, str]
    settings: Settings
    spark: Any


def open_notebook(use_case: str = "churn", env: str | None = None, **defaults: str) -> Notebook:
    """Read the parameters (`use_case`, `env` and the notebook's own), load config, get the session.

    `env` defaults to `databricks` on a Databricks runtime and `local` elsewhere.
    """
    configure_logging()
    env = env or platforms.default_environment()
    params = parameters(use_case=use_case, env=env, **defaults)
    settings = load_settings(params["use_case"], params["env"])
    spark = platforms.Platform(settings.env).session(f"lakeforge-notebook-{params['use_case']}")
    return Notebook(params, settings, spark)
