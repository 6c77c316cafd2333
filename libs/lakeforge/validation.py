"""Great Expectations (GX Core 1.x) on Spark DataFrames, without collecting failing rows.

GX computes the aggregate metrics (success, unexpected counts) and, with
`return_unexpected_index_query`, hands back the Spark filter that selects the failing rows; that
filter is applied by Spark itself to tag rows for quarantine. Results use the BASIC format (at most
20 sample values each); never COMPLETE, whose index list is unbounded on the driver. GX's Spark
datasource is created with `persist=False`: the caller persists the batch once and unpersists it.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeforge import offline_docs
from lakeforge.errors import ConfigError

if TYPE_CHECKING:
    from lakeforge.config import Expectation, UseCase

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
log = logging.getLogger(__name__)
# The GX file context keeps suites and definitions in one project folder: one validation at a time.
_GX_LOCK = threading.Lock()

RESULT_SCHEMA = (
    "run_id string, table_name string, expectation string, action string, success boolean, "
    "element_count long, unexpected_count long, observed_value string, details string"
)


class UnsupportedQuarantine(ValueError):
    """GX returned no row filter for an expectation whose action is `quarantine`."""


def expectation_class_name(expectation_type: str) -> str:
    """`expect_column_values_to_not_be_null` -> `ExpectColumnValuesToNotBeNull`."""
    return "".join(part.capitalize() for part in expectation_type.split("_"))


def build_expectation(expectation: Expectation, index: int = 0) -> Any:
    """Instantiate the GX expectation a config entry describes (raises ValueError when it cannot)."""
    import great_expectations.expectations as gxe

    cls = getattr(gxe, expectation_class_name(expectation.type), None)
    if cls is None:
        raise ValueError(f"'{expectation.type}' is not a Great Expectations expectation")
    kwargs = {**expectation.kwargs, "meta": {"lakeforge_index": index}}
    if expectation.column:
        kwargs["column"] = expectation.column
    try:
        return cls(**kwargs)
    except Exception as exc:  # GX raises pydantic errors of its own version
        raise ValueError(f"'{expectation.type}' does not accept {sorted(kwargs)}: {exc}") from exc


def check_expectations(use_case: UseCase, use_case_file: str | None = None) -> None:
    """Build every expectation of the use case with Great Expectations before a step that validates runs:
    an unknown type or a wrong argument fails here, naming the file and every key, not mid-job."""
    mistakes = []
    for source_name, source in use_case.sources.items():
        for index, expectation in enumerate(source.expectations):
            try:
                build_expectation(expectation, index)
            except ValueError as exc:
                mistakes.append((f"sources.{source_name}.expectations.{index}", str(exc)))
    if mistakes:
        (key, expected), *more = mistakes
        raise ConfigError(use_case_file or f"use case {use_case.name}", key, expected, more)


def filter_from_index_query(query: str | None) -> str | None:
    """Pull the SQL condition out of GX's `df.filter(F.expr('<condition>'))` without evaluating code."""
    if not query:
        return None
    try:
        call = ast.parse(query, mode="eval").body
        inner = call.args[0]
        if isinstance(inner, ast.Call) and inner.args and isinstance(inner.args[0], ast.Constant):
            return str(inner.args[0].value)
    except (SyntaxError, AttributeError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict on a batch."""

    expectation: Expectation
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed_value: Any
    failing_rows_filter: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class ValidationOutcome:
    """Every expectation's verdict on a batch, and what to do about it."""

    table: str
    outcomes: list[ExpectationOutcome]

    def quarantine_conditions(self) -> dict[str, Column]:
        """Spark conditions, by expectation name, true on the rows to quarantine."""
        conditions: dict[str, Column] = {}
        for outcome in self.outcomes:
            if outcome.expectation.action != "quarantine" or outcome.success:
                continue
            if outcome.failing_rows_filter is None:
                raise UnsupportedQuarantine(
                    f"{self.table}: {outcome.expectation.name} gives no row filter, so its action cannot be "
                    "'quarantine': use 'warn' or 'fail'"
                )
            conditions[outcome.expectation.name] = F.coalesce(F.expr(outcome.failing_rows_filter), F.lit(False))
        return conditions

    def failed_fail_expectations(self) -> list[str]:
        return [o.expectation.name for o in self.outcomes if o.expectation.action == "fail" and not o.success]

    def to_rows(self, spark: SparkSession, run_id: str) -> DataFrame:
        rows = [
            (
                run_id,
                self.table,
                o.expectation.name,
                o.expectation.action,
                o.success,
                o.element_count,
                o.unexpected_count,
                None if o.observed_value is None else json.dumps(o.observed_value, default=str),
                json.dumps(o.details, default=str),
            )
            for o in self.outcomes
        ]
        return spark.createDataFrame(rows, RESULT_SCHEMA).withColumn("validated_at", F.current_timestamp())


@lru_cache(maxsize=4)
def _context(project_dir: str, docs_dir: str):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="file", project_root_dir=project_dir)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if "lakeforge" not in context.list_data_docs_sites():
        context.add_data_docs_site(
            site_name="lakeforge",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
            },
        )
    return context


def validate(
    df: DataFrame, expectations: list[Expectation], table: str, project_dir: str, docs_dir: str, key: list[str]
) -> ValidationOutcome:
    """Run the expectations on `df` with GX and store the result (one call at a time per process)."""
    with _GX_LOCK:
        return _validate(df, expectations, table, project_dir, docs_dir, key)


def _validate(
    df: DataFrame, expectations: list[Expectation], table: str, project_dir: str, docs_dir: str, key: list[str]
) -> ValidationOutcome:
    import great_expectations as gx

    context = _context(project_dir, docs_dir)
    suite_name = f"{table}_suite"
    suite = gx.ExpectationSuite(
        name=suite_name, expectations=[build_expectation(e, i) for i, e in enumerate(expectations)]
    )
    suite = context.suites.add_or_update(suite)
    datasource = context.data_sources.add_or_update_spark(name="spark", persist=False)
    asset_names = {asset.name for asset in datasource.assets}
    asset = datasource.get_asset(table) if table in asset_names else datasource.add_dataframe_asset(name=table)
    batch_names = {b.name for b in asset.batch_definitions}
    batch_definition = (
        asset.get_batch_definition("whole")
        if "whole" in batch_names
        else asset.add_batch_definition_whole_dataframe("whole")
    )
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{table}_validation", data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": df},
        result_format={
            "result_format": "BASIC",
            "return_unexpected_index_query": True,
            "unexpected_index_column_names": key,
        },
    )
    outcomes = []
    for item in result.results:
        expectation = expectations[item.expectation_config.meta["lakeforge_index"]]
        details = item.result or {}
        outcomes.append(
            ExpectationOutcome(
                expectation=expectation,
                success=bool(item.success),
                element_count=details.get("element_count"),
                unexpected_count=details.get("unexpected_count"),
                observed_value=details.get("observed_value"),
                failing_rows_filter=filter_from_index_query(details.get("unexpected_index_query")),
                details={
                    k: v for k, v in details.items() if k.startswith("partial_unexpected") or k.endswith("percent")
                },
            )
        )
    return ValidationOutcome(table=table, outcomes=outcomes)


def build_data_docs(project_dir: str, docs_dir: str, since: dt.datetime | None = None) -> Path:
    """Render the stored validation results as the GX Data Docs HTML site, then the index that opens offline
    (`offline_docs`; GX's own index is kept as `gx-index.html`); return the index page.

    With `since`, only the results validated since then and their suites are rendered (the pages of older
    results stay as they were written): a daily run renders its own results, not the whole history again.
    """
    Path(docs_dir).mkdir(parents=True, exist_ok=True)
    context = _context(project_dir, docs_dir)
    changed = None
    if since is not None:
        results = [key for key in context.validation_results_store.list_keys() if _run_time(key) >= since]
        changed = results + list({key.expectation_suite_identifier for key in results})
    if changed is None or changed:  # GX reads an empty list as "everything"
        context.build_data_docs(site_names=["lakeforge"], resource_identifiers=changed)
    results_dir = Path(context.root_directory) / "uncommitted" / "validations"
    return offline_docs.write_index(results_dir, Path(docs_dir))


def _run_time(key: Any) -> dt.datetime:
    """When a stored result was validated (UTC). GX names the folder by the UTC time and reads it back labelled
    with the machine's local zone: the wall clock is UTC whatever the label says."""
    return key.run_id.run_time.replace(tzinfo=dt.UTC)
