"""What the config schemas share: a strict base model and the field types names must satisfy.

Identifiers that end up in SQL (schemas, tables, columns) are checked against a strict pattern, so a
config file can never inject SQL through a table name. Each rule is one annotated type, used as the
type of every field (and dict key) it applies to.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LAYERS = ("bronze", "silver", "gold", "features")


class Strict(BaseModel):
    """Unknown keys are mistakes, and a loaded config never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_identifier(name: str) -> str:
    """Return `name` if it is a plain SQL identifier, else raise ValueError."""
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.match(name):
        raise ValueError(f"'{name}' is not a valid identifier (letters, digits, underscore; not starting with a digit)")
    return name


def check_key_columns(columns: list[str]) -> list[str]:
    """At least one key column, each a plain identifier."""
    if not columns:
        raise ValueError("at least one key column is required")
    return [check_identifier(column) for column in columns]


def check_table_reference(reference: str) -> tuple[str, str]:
    """Split `layer.table` (for example `silver.orders`) and check both parts."""
    layer, _, name = reference.partition(".")
    if layer not in LAYERS or not name:
        raise ValueError(f"'{reference}' must look like 'layer.table' with layer one of {', '.join(LAYERS)}")
    return layer, check_identifier(name)


def resolve_callable(reference: str) -> Callable[..., Any]:
    """Import `package.module:function` and return the function."""
    module_name, _, attr = reference.partition(":")
    if not module_name or not attr:
        raise ValueError(f"'{reference}' must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"module '{module_name}' cannot be imported ({exc})") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise ValueError(f"'{module_name}' has no function '{attr}'")
    return function


def check_transform_accepts(reference: str, inputs: list[str], params: dict[str, Any]) -> None:
    """Fail on load, not mid-job, when a transform cannot take the inputs and params config gives it."""
    function = resolve_callable(reference)
    try:
        inspect.signature(function).bind(**dict.fromkeys(inputs), **params)
    except TypeError as exc:
        raise ValueError(
            f"{reference} cannot be called with inputs {inputs} and params {sorted(params)}: {exc}"
        ) from exc


def check_sql(statement: str, inputs: list[str], params: dict[str, Any]) -> None:
    """A query Spark SQL can run over these inputs: one statement that reads (no DDL or DML), every table it
    names is one of `inputs` (by plain name), and every `:marker` is one of `params` and each param is used.
    Parsed with sqlglot's Spark dialect, so a mistake fails when config loads, not in the middle of a job."""
    import sqlglot
    from sqlglot import exp

    try:
        statements = [tree for tree in sqlglot.parse(statement, read="spark") if tree is not None]
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"the SQL does not parse: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        kinds = ", ".join(type(tree).__name__.upper() for tree in statements) or "nothing"
        raise ValueError(f"the SQL must be one query (SELECT ...), it is {kinds}")
    tree = statements[0]
    named_here = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.db or table.catalog:
            named = table.sql(dialect="spark")
            raise ValueError(f"the SQL reads {named}: name an input by itself ({', '.join(inputs)})")
        if table.name not in named_here and table.name not in inputs:
            raise ValueError(f"the SQL reads '{table.name}', which is not one of its inputs ({', '.join(inputs)})")
    markers = {placeholder.name for placeholder in tree.find_all(exp.Placeholder)}
    if markers - set(params):
        raise ValueError(f"the SQL uses :{', :'.join(sorted(markers - set(params)))}, not given in params")
    if set(params) - markers:
        raise ValueError(f"params {', '.join(sorted(set(params) - markers))} are not used by the SQL (as :name)")


def _table_reference(reference: str) -> str:
    check_table_reference(reference)
    return reference


def _callable_reference(reference: str) -> str:
    resolve_callable(reference)
    return reference


# A name Spark SQL takes unquoted: a table, column, schema or catalog name in config.
Identifier = Annotated[str, AfterValidator(check_identifier)]
# The key columns of a table: at least one, each an identifier.
KeyColumns = Annotated[list[str], AfterValidator(check_key_columns)]
# A table of this use case as `layer.table` (`silver.orders`).
TableReference = Annotated[str, AfterValidator(_table_reference)]
# A function as `package.module:function`, importable when the config loads.
CallableReference = Annotated[str, AfterValidator(_callable_reference)]
