"""Side files a scheduler or another process reads (the champion and decision files the Airflow DAG
branches on, `spark-defaults.conf`, manifests): written whole or not at all.

The text goes to a temporary file in the same folder, is flushed to disk, and replaces the target in
one rename: a reader sees the old contents or the new, never half a file, even when the writer dies.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
