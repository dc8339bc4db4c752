"""Client-chosen text made safe to write into a log line."""

from __future__ import annotations

import re

# C0 and C1 control characters (newlines, escapes, NUL) and DEL: a name that holds them
# could start a forged log line or move a terminal's cursor.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: object, *, limit: int = 200) -> str:
    """``text`` with each control character replaced by "?", cut to ``limit`` characters."""
    value = _CONTROL.sub("?", str(text))
    return value if len(value) <= limit else value[: limit - 1] + "…"
