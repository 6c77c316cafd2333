"""An index of the Data Docs that opens without network access.

GX's own `index.html` loads its styles and scripts from CDNs and fills its validation table with
JavaScript: offline it renders unstyled with an empty table. This page is plain HTML with its style
inline and no script: one row per stored validation result (newest first), the failed expectations
named, each row linked to GX's page for that result (static tables, readable offline) and GX's own
index kept beside it as `gx-index.html`.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from lakeforge import atomic

log = logging.getLogger(__name__)

GX_INDEX = "gx-index.html"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.failed { color: #b00020; font-weight: 600; }
.passed { color: #1b5e20; }
"""


@dataclass(frozen=True)
class StoredResult:
    """One stored GX validation result, as the index shows it."""

    table: str
    suite: str
    validated_at: str
    success: bool
    evaluated: int
    failed: list[str]
    page: str  # GX's page for this result, relative to the Data Docs folder


class UnreadableResult(ValueError):
    """A stored validation result that is not the JSON GX writes."""


def read_result(path: Path, results_dir: Path) -> StoredResult:
    """A stored result (`<results_dir>/<suite>/<run>/<time>/<batch>.json`) and the path of its GX page."""
    try:
        doc = json.loads(path.read_text())
        statistics, meta = doc["statistics"], doc["meta"]
        configs = [item["expectation_config"] for item in doc["results"] if not item["success"]]
        # Named as the quarantine reasons and ops.validation_results name them: `type:column`.
        failed = [":".join(filter(None, (c["type"], c["kwargs"].get("column")))) for c in configs]
        return StoredResult(
            table=meta["active_batch_definition"]["data_asset_name"],
            suite=doc["suite_name"],
            validated_at=meta["validation_time"],
            success=bool(doc["success"]),
            evaluated=int(statistics["evaluated_expectations"]),
            failed=failed,
            page=(Path("validations") / path.relative_to(results_dir).with_suffix(".html")).as_posix(),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnreadableResult(f"{path}: not a GX validation result ({exc})") from exc


def render(results: list[StoredResult], docs_dir: Path, unreadable: list[str] = ()) -> str:
    """The index page: every result newest first, linked to its GX page where that page exists, and the stored
    files that could not be read, named."""
    rows = []
    for result in sorted(results, key=lambda r: r.validated_at, reverse=True):
        status = '<span class="passed">passed</span>' if result.success else '<span class="failed">failed</span>'
        when = html.escape(result.validated_at)
        link = f'<a href="{html.escape(result.page)}">{when}</a>' if (docs_dir / result.page).is_file() else when
        failed = "<br>".join(html.escape(name) for name in result.failed) or "none"
        rows.append(
            f"<tr><td>{html.escape(result.table)}</td><td>{link}</td><td>{status}</td>"
            f"<td>{result.evaluated}</td><td>{failed}</td></tr>"
        )
    gx_link = f'<p>GX\'s own site: <a href="{GX_INDEX}">{GX_INDEX}</a> (its styles need network access).</p>'
    if unreadable:
        names = "".join(f"<li>{html.escape(name)}</li>" for name in unreadable)
        gx_link += f'<p class="failed">Stored results that could not be read:</p><ul>{names}</ul>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>lakeforge Data Docs</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>Validation results</h1>\n{gx_link}\n"
        "<table><thead><tr><th>table</th><th>validated at (UTC)</th><th>result</th><th>expectations</th>"
        "<th>failed</th></tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n</body></html>\n"
    )


REMOTE_ASSET = re.compile(
    r"""<(?:script|img|iframe)\b[^>]*\bsrc\s*=\s*["']?((?:https?:)?//[^"'\s>]+)"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?((?:https?:)?//[^"'\s>]+)|@import\s+(?:url\()?["']?((?:https?:)?//[^"')\s]+)""",
    re.IGNORECASE,
)


def remote_assets(page: str) -> list[str]:
    """What a page loads from the network when opened (scripts, images, frames, stylesheets, CSS imports);
    plain links to follow are not loads."""
    return [next(filter(None, match)) for match in REMOTE_ASSET.findall(page)]


def write_index(results_dir: Path, docs_dir: Path) -> Path:
    """Move GX's index aside (when it just wrote one) and write the offline index as `index.html`."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    index = docs_dir / "index.html"
    if index.is_file() and "<title>lakeforge Data Docs</title>" not in index.read_text():
        index.replace(docs_dir / GX_INDEX)
    results, unreadable = [], []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            results.append(read_result(path, results_dir))
        except UnreadableResult as exc:
            log.warning("Data Docs index: %s", exc)
            unreadable.append(str(exc))
    atomic.write_text(index, render(results, docs_dir, unreadable))
    return index
