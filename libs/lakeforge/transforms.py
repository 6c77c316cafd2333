"""Running a use case's computations (gold tables, labels, feature tables) over their named inputs.

A computation is a Python function, called with one DataFrame per input and its params as keywords, or
a Spark SQL query that reads each input by its name, with params as named markers (`:horizon_days`).
For a query the inputs become temporary views of those names only while Spark analyses it: the
DataFrame it returns holds their plans, not the names. One query is analysed at a time (gold tables
are built concurrently, and two may read an input of the same name).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession

from lakeforge.config import resolve_callable

if TYPE_CHECKING:
    from lakeforge.config.use_case import Transformed

_VIEWS = threading.Lock()


def compute(spec: Transformed, inputs: dict[str, DataFrame]) -> DataFrame:
    """The rows `spec` computes from `inputs`."""
    if spec.sql is None:
        return resolve_callable(spec.transform)(**inputs, **spec.params)
    return run_sql(spec.sql, inputs, spec.params)


def run_sql(statement: str, inputs: dict[str, DataFrame], params: dict | None = None) -> DataFrame:
    """A query over `inputs`, each readable by its name, with `params` bound to its `:name` markers."""
    spark = next(iter(inputs.values())).sparkSession if inputs else SparkSession.active()
    with _VIEWS:
        for name, rows in inputs.items():
            rows.createOrReplaceTempView(name)
        try:
            return spark.sql(statement, args=params or None)
        finally:
            for name in inputs:
                spark.catalog.dropTempView(name)
