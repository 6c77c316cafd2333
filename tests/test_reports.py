"""Reports open offline: the Data Docs index is plain HTML that loads nothing, built from GX's stored results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lakeforge import offline_docs

GX_PAGE_WITH_CDN = (
    '<html><head><link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css">'
    '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script></head><body></body></html>'
)


def stored_result(results: Path, table: str, when: str, failures: list[tuple[str, str | None]], passed: int) -> Path:
    """A validation result laid out as GX's file store keeps it."""
    failed = [
        {"success": False, "expectation_config": {"type": kind, "kwargs": {"column": column} if column else {}}}
        for kind, column in failures
    ]
    ok = [{"success": True, "expectation_config": {"type": "expect_column_to_exist", "kwargs": {}}}] * passed
    doc = {
        "suite_name": f"{table}_suite",
        "success": not failures,
        "statistics": {"evaluated_expectations": len(failed) + passed},
        "meta": {"active_batch_definition": {"data_asset_name": table}, "validation_time": when},
        "results": failed + ok,
    }
    path = results / f"{table}_suite" / "__none__" / when.replace(":", "") / f"spark-{table}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def docs(tmp_path: Path) -> tuple[Path, Path]:
    results, docs = tmp_path / "gx" / "uncommitted" / "validations", tmp_path / "data_docs"
    stored_result(results, "churn_orders", "2026-12-01T04:00:00+00:00", [], passed=3)
    failed = stored_result(
        results, "churn_customers", "2026-12-01T05:00:00+00:00", [("expect_column_values_to_be_between", "age")], 2
    )
    page = docs / "validations" / failed.relative_to(results).with_suffix(".html")
    page.parent.mkdir(parents=True)
    page.write_text("<table><tr><td>expect_column_values_to_be_between</td></tr></table>")
    (docs / "index.html").write_text(GX_PAGE_WITH_CDN)
    return results, docs


def rows(page: str) -> list[str]:
    return re.findall(r"<tr><td>.*?</tr>", page)


def test_the_index_lists_every_result_newest_first_and_names_what_failed(docs):
    results, folder = docs
    page = offline_docs.write_index(results, folder).read_text()
    customers, orders = rows(page)
    assert "<td>churn_customers</td>" in customers and "failed" in customers
    assert "expect_column_values_to_be_between:age" in customers and "<td>3</td>" in customers
    assert "<td>churn_orders</td>" in orders and "passed" in orders and "<td>none</td>" in orders


def test_the_index_loads_nothing_and_links_only_files_on_disk(docs):
    results, folder = docs
    page = offline_docs.write_index(results, folder).read_text()
    assert offline_docs.remote_assets(page) == [] and "<script" not in page
    linked = re.findall(r'href="([^"]+)"', page)
    assert all((folder / ref).is_file() for ref in linked)
    # The result without a GX page is listed, not linked.
    assert len([ref for ref in linked if ref.startswith("validations/")]) == 1


def test_gx_index_is_kept_beside_it_once(docs):
    results, folder = docs
    offline_docs.write_index(results, folder)
    offline_docs.write_index(results, folder)  # a rerun without a new GX build does not move the index aside
    assert (folder / offline_docs.GX_INDEX).read_text() == GX_PAGE_WITH_CDN
    assert sorted(offline_docs.remote_assets(GX_PAGE_WITH_CDN)) == [
        "https://code.jquery.com/jquery-3.7.1.min.js",
        "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css",
    ]


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ('<img src="//cdn.example.org/logo.png">', ["//cdn.example.org/logo.png"]),
        ("<style>@import url('https://fonts.example.org/a.css');</style>", ["https://fonts.example.org/a.css"]),
        ('<a href="https://docs.example.org/">docs</a><img src="static/logo.png">', []),
    ],
)
def test_remote_assets_are_loads_not_links(page, expected):
    assert offline_docs.remote_assets(page) == expected


@pytest.mark.parametrize("content", ["{not json", json.dumps({"suite_name": "x"}), json.dumps([1, 2])])
def test_an_unreadable_stored_result_is_named_and_the_others_listed(docs, content):
    results, folder = docs
    broken = results / "churn_tickets_suite" / "__none__" / "t" / "spark-churn_tickets.json"
    broken.parent.mkdir(parents=True)
    broken.write_text(content)
    page = offline_docs.write_index(results, folder).read_text()
    assert str(broken) in page and len(rows(page)) == 2
