"""Landing: which files of a source to read now, and what became of every file the source ever had.

Every file under a source's landing folder is accounted for in one `ops.landing_files` table, a row per
event: `planned` (about to be read in batch N), `landed` (its rows are in bronze), `rejected` (it could
not be read, with the reason; the rest of its batch landed), `rewritten` (it changed size or time after
it landed: the feed rewrote history, named in a warning, not read again). A file is read once: a batch
is planned before it is read, so a driver killed mid-batch replays exactly the same files, which Delta
appends at most once. A rejected file is read again when it changes, or when the source is read another
way (a declared encoding or layout). A file no pattern matches is named on every run.

Pure functions over plain values; the bronze step lists the files and reads and writes the tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from lakeforge.globs import glob_regex

PLANNED, LANDED, REJECTED, REWRITTEN = "planned", "landed", "rejected", "rewritten"
MANIFEST_TABLE = "landing_files"


@dataclass(frozen=True)
class LandingFile:
    """A file as listed now: its identity (the path Spark records in bronze's `_source_file`), the path
    to read it by, where it sits under the source folder, and its size and modification time."""

    path: str
    read_path: str
    relative: str
    size: int
    modified_ms: int


@dataclass(frozen=True)
class Recorded:
    """One event of the manifest: what happened to a file in a batch, as it was then."""

    path: str
    size: int
    modified_ms: int
    batch_id: int
    status: str
    reason: str | None
    read_as: str


@dataclass(frozen=True)
class LandingPlan:
    """What one ingest of a source does: read `to_read` as batch `batch_id` (a replay when a killed run
    planned it), and name what it will not read."""

    batch_id: int
    to_read: list[LandingFile]
    replay: bool = False
    unmatched: list[LandingFile] = field(default_factory=list)
    rewritten: list[LandingFile] = field(default_factory=list)
    still_rejected: list[Recorded] = field(default_factory=list)
    vanished: list[Recorded] = field(default_factory=list)


def latest_events(manifest: Iterable[Recorded]) -> dict[str, Recorded]:
    """The newest event of every file (`manifest` in the order it was recorded)."""
    return {event.path: event for event in manifest}


def split_by_pattern(listing: Iterable[LandingFile], pattern: str) -> tuple[list[LandingFile], list[LandingFile]]:
    """The files `pattern` matches, and the others."""
    regex = glob_regex(pattern)
    matched, unmatched = [], []
    for file in listing:
        (matched if regex.match(file.relative) else unmatched).append(file)
    return matched, unmatched


def _changed(file: LandingFile, event: Recorded) -> bool:
    return (file.size, file.modified_ms) != (event.size, event.modified_ms)


def plan_batch(listing: list[LandingFile], manifest: list[Recorded], pattern: str, read_as: str) -> LandingPlan:
    """Decide what to read: a batch a killed run planned and did not finish, as it was planned; else every
    matched file never landed, and every rejected one that changed or is now read another way."""
    latest = latest_events(manifest)
    listed = {file.path: file for file in listing}
    pending = [event for event in latest.values() if event.status == PLANNED]
    if pending:
        batch_id = max(event.batch_id for event in pending)
        return LandingPlan(
            batch_id=batch_id,
            to_read=[listed[event.path] for event in pending if event.path in listed],
            replay=True,
            vanished=[event for event in pending if event.path not in listed],
        )
    matched, unmatched = split_by_pattern(listing, pattern)
    to_read, rewritten, still_rejected = [], [], []
    for file in matched:
        event = latest.get(file.path)
        if event is None:
            to_read.append(file)
        elif event.status == REJECTED:
            if _changed(file, event) or event.read_as != read_as:
                to_read.append(file)
            else:
                still_rejected.append(event)
        elif _changed(file, event):
            rewritten.append(file)
    return LandingPlan(
        batch_id=max((event.batch_id for event in manifest), default=-1) + 1,
        to_read=to_read,
        unmatched=unmatched,
        rewritten=rewritten,
        still_rejected=still_rejected,
    )


def relative_path(path: str, folder: str) -> str | None:
    """`path` below `folder` (both with or without a scheme such as `file:` or `dbfs:`), or None."""
    inside, root = _without_scheme(path), _without_scheme(folder).rstrip("/")
    return inside[len(root) + 1 :] if inside.startswith(root + "/") else None


def _without_scheme(path: str) -> str:
    """`file:///a/b`, `file:/a/b` and `/a/b` alike as `/a/b`; `s3a://bucket/a` as `/a`; percent-escapes decoded."""
    bare = re.sub(r"^[A-Za-z][\w+.-]*:(//[^/]*)?", "", path)
    return "/" + unquote(bare).lstrip("/")


# Spark names the file it could not read: "[FAILED_READ_FILE.NO_HINT] Encountered error while reading file <path>."
_UNREADABLE = re.compile(r"\[FAILED_READ_FILE\.\w+\] Encountered error while reading file (.+?)\.\s+SQLSTATE")
_JAVA_PACKAGE = re.compile(r"\b(?:[a-z_][\w$]*\.)+(?=[A-Z])")


def unreadable_file(error: str, paths: Iterable[str]) -> str | None:
    """Which of `paths` Spark's error says it could not read, if it names one."""
    named = {_without_scheme(match) for match in _UNREADABLE.findall(error)}
    return next((path for path in paths if _without_scheme(path) in named), None)


def rejection_reason(error: str) -> str:
    """One line saying why a file could not be read: the innermost cause Spark reports, without its stack."""
    lines = error.splitlines()
    causes = [number for number, line in enumerate(lines) if line.startswith("Caused by: ")]
    start = causes[-1] if causes else 0
    message = [lines[start].removeprefix("Caused by: ")]
    for line in lines[start + 1 :]:
        if line.lstrip().startswith("at ") or line.startswith("Caused by: ") or line.lstrip().startswith("..."):
            break
        message.append(line)
    text = " ".join(" ".join(message).split())
    text = _JAVA_PACKAGE.sub("", text).removeprefix(": ")
    return text if len(text) <= 500 else text[:497] + "..."
