"""File patterns as Hadoop reads them, matched against paths relative to a folder.

`*` matches any characters within one folder level, `?` one character, `[abc]`, `[a-z]` and `[^a]` a
character of a set, `{a,b}` any of the alternatives, and a backslash escapes the next character. The
same pattern language Spark's file sources use for a path, so a source's `files:` means what it would
mean to `spark.read.load`.
"""

from __future__ import annotations

import re


class GlobError(ValueError):
    """A file pattern that cannot be read (an unclosed `[` or `{`, a stray `}`)."""


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regular expression matching exactly the relative paths `pattern` matches."""
    parts: list[str] = []
    open_braces = 0
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            if position + 1 == len(pattern):
                raise GlobError(f"'{pattern}' ends with a lone backslash")
            parts.append(re.escape(pattern[position + 1]))
            position += 2
            continue
        if char == "[":
            end = pattern.find("]", position + 2)
            if end < 0:
                raise GlobError(f"'{pattern}' has a '[' that is never closed")
            members = pattern[position + 1 : end]
            negated = members[0] in "^!"
            members = members[1:] if negated else members
            escaped = "".join("\\" + c if c in "\\^[]" else c for c in members)
            parts.append(f"[{'^/' if negated else ''}{escaped}]")
            position = end + 1
            continue
        if char == "*":
            parts.append("[^/]*")
        elif char == "?":
            parts.append("[^/]")
        elif char == "{":
            open_braces += 1
            parts.append("(?:")
        elif char == "," and open_braces:
            parts.append("|")
        elif char == "}":
            if not open_braces:
                raise GlobError(f"'{pattern}' has a '}}' with no '{{' before it")
            open_braces -= 1
            parts.append(")")
        else:
            parts.append(re.escape(char))
        position += 1
    if open_braces:
        raise GlobError(f"'{pattern}' has a '{{' that is never closed")
    return re.compile("".join(parts) + r"\Z")


def escape(path: str) -> str:
    """`path` with every pattern character escaped, so Spark reads the one file it names."""
    return re.sub(r"([\\{}\[\]*?])", r"\\\1", path)
