"""Running a use case's computations (gold tables, labels, feature tables) over their named inputs.

A computation is a Python function, called with one DataFrame per input and its params as keywords, or
a Spark SQL query that reads each input by its name, with params as named markers (`:horizon_days`).
For a query the inputs become temporary views of those names only while Spark analyses it: the
DataFrame it returns holds their plans, not the names. One query is analysed at a time (gold tables
are built concurrently, and two may read an input of the same name).

Markers are replaced by SQL literals here, not bound by Spark: with Delta 4.4.0's session extension,
`spark.sql(query, args=...)` fails with UNBOUND_SQL_PARAMETER (the markers survive its analysis).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def definition_fingerprint(spec: Transformed) -> str:
    """A digest of what a computation is: its config (query or function name, params, inputs) and, for a
    Python function, the source file it is defined in. Equal digests compute equal rows from equal inputs."""
    digest = hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode())
    if spec.transform is not None:
        source_file = inspect.getsourcefile(resolve_callable(spec.transform))
        digest.update(Path(source_file).read_bytes() if source_file else spec.transform.encode())
    return digest.hexdigest()[:16]


def run_sql(statement: str, inputs: dict[str, DataFrame], params: dict | None = None) -> DataFrame:
    """A query over `inputs`, each readable by its name, with `params` bound to its `:name` markers."""
    spark = next(iter(inputs.values())).sparkSession if inputs else SparkSession.active()
    query = bind_params(statement, params or {})
    with _VIEWS:
        for name, rows in inputs.items():
            rows.createOrReplaceTempView(name)
        try:
            return spark.sql(query)
        finally:
            for name in inputs:
                spark.catalog.dropTempView(name)


def sql_literal(value: Any) -> str:
    """A param as a Spark SQL literal: numbers, strings (escaped), booleans, dates, timestamps, null, lists."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, list | tuple):
        return f"array({', '.join(sql_literal(item) for item in value)})"
    raise ValueError(f"a SQL param cannot be {value!r}: give a number, string, boolean, date or list")


def bind_params(statement: str, params: dict[str, Any]) -> str:
    """The statement with each `:name` marker of `params` replaced by its literal; strings, comments and
    the `::` cast are left alone (the statement is tokenized, not searched)."""
    from sqlglot.dialects.spark import Spark
    from sqlglot.tokens import TokenType

    tokens = Spark().tokenize(statement)
    pieces, position = [], 0
    for colon, name in zip(tokens, tokens[1:], strict=False):
        if colon.token_type == TokenType.COLON and name.start == colon.end + 1 and name.text in params:
            pieces += [statement[position : colon.start], sql_literal(params[name.text])]
            position = name.end + 1
    return "".join(pieces) + statement[position:]
