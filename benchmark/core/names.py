"""Names of suites, datasets, targets, defenses and attacks are identifiers.

They label every table, figure file and page of the leaderboard, and cards arrive by pull request:
a name restricted to letters, digits, ``-``, ``_`` and ``.`` cannot carry markup, a script URL or a
path into anything that renders or stores it.
"""

from __future__ import annotations

import re

from benchmark.core.errors import BenchmarkError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
NAME_RULE = "a name is 1-100 letters, digits, '-', '_' or '.', starting with a letter or digit"
_NAME = re.compile(NAME_PATTERN)


def is_name(text: str) -> bool:
    return isinstance(text, str) and _NAME.match(text) is not None


def check_name(text: object, what: str, where: str) -> str:
    """``text`` if it is a name, else one line naming the field and the rule."""
    if not isinstance(text, str) or not is_name(text):
        raise BenchmarkError(f"{where}: {what} {text!r} is not a name ({NAME_RULE})")
    return text


def as_name(text: str) -> str:
    """A name made from free text (a folder someone else named): other characters become '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:100]
    return name or "unnamed"
