"""Which code produced a table or a model: the git commit when running from a checkout, else the package version."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from lakeforge import __version__

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def code_version() -> str:
    """`git:<commit>` (with `+dirty` when files differ from it) or `lakeforge==<version>` for an installed wheel."""
    if not (REPOSITORY_ROOT / ".git").exists():
        return f"lakeforge=={__version__}"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPOSITORY_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPOSITORY_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"lakeforge=={__version__}"
    return f"git:{commit}{'+dirty' if dirty else ''}"
