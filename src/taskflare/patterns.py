"""Regular expressions that come from users (a crawl's `include` / `exclude`), run by RE2.

Python's `re` backtracks: `(a+)+$` against forty `a`s and a `!` runs for minutes, and a
payload holding it would stall the worker that runs it (ReDoS). RE2 (Google's engine,
through the `google-re2` package) runs any pattern in time linear in the text, with
bounded memory, and releases the GIL while it matches. The price is its syntax: no
look-around and no backreferences; a pattern using them is refused when compiled, with a
message saying so (docs/decisions.md, "User-supplied regular expressions").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

from .errors import TaskflareError

MAX_PATTERN_CHARS = 1000  # the longest pattern taken
# [bytes] What RE2 may use for one pattern (its program and its DFA cache); a pattern
# whose program would not fit is refused ("too large"), and a search whose DFA outgrows
# the rest runs on RE2's NFA instead (slower, still linear). RE2's own default is 8 MiB;
# the re2 module keeps the last 128 compiled patterns, so this bounds them at 256 MiB.
MAX_PATTERN_MEMORY = 2 << 20

# RE2's words for what Python's `re` has and RE2 has not, and how to say it to a user.
_HINTS = (
    ("invalid perl operator: (?=", "look-ahead (?=...) is not supported"),
    ("invalid perl operator: (?!", "negative look-ahead (?!...) is not supported"),
    ("invalid perl operator: (?<=", "look-behind (?<=...) is not supported"),
    ("invalid perl operator: (?<!", "negative look-behind (?<!...) is not supported"),
    ("invalid perl operator: (?>", "atomic groups (?>...) are not needed nor supported"),
    ("invalid perl operator: (?", "of the inline flags only i, m, s and U are supported"),
    ("bad repetition operator: ++", "possessive quantifiers are not needed nor supported"),
    ("bad repetition operator: *+", "possessive quantifiers are not needed nor supported"),
    ("bad repetition operator: ?+", "possessive quantifiers are not needed nor supported"),
    ("invalid escape sequence: \\Z", "write \\z for the end of the text (RE2 has no \\Z)"),
    ("pattern too large", "it would take more than 2 MiB to run"),
)


class InvalidPattern(TaskflareError, ValueError):
    """A regular expression does not compile, or uses what RE2 does not run."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled user pattern: `search(text)` in time linear in `len(text)`."""

    source: str
    _regexp: Any

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in `text` (as `re.search`)."""
        return self._regexp.search(text) is not None


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_PATTERN_MEMORY
    options.log_errors = False  # the reason is raised, not printed to stderr
    return options


def _reason(error: Exception, source: str) -> str:
    raw = error.args[0] if error.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    backreference = text.startswith("invalid escape sequence: \\") and text[-1:].isdigit()
    if backreference or (text == "invalid perl operator: (?P" and "(?P=" in source):
        return f"{text}: backreferences are not supported"
    for start, hint in _HINTS:
        if text.startswith(start):
            return f"{text}: {hint}"
    return text or "it does not compile"


def compile_pattern(source: str) -> Pattern:
    """`source` compiled for `Pattern.search` (RE2 syntax: Python's, less look-around and
    backreferences; `\\w`, `\\d`, `\\s`, `\\b` are ASCII, `\\pL` is any letter).
    Compiled patterns are cached (the last 128), so compiling one again is cheap.

    Raises `InvalidPattern` (a `ValueError`) naming the pattern and why, for a pattern
    that does not compile, needs what RE2 lacks, is longer than `MAX_PATTERN_CHARS` or
    would need more than `MAX_PATTERN_MEMORY` bytes."""
    if not isinstance(source, str):
        raise InvalidPattern(f"{source!r} is not a regular expression (a string)")
    if len(source) > MAX_PATTERN_CHARS:
        raise InvalidPattern(
            f"a pattern of {len(source)} characters is too long; the limit is {MAX_PATTERN_CHARS}"
        )
    try:
        regexp = re2.compile(source, _options())
    except re2.error as exc:
        raise InvalidPattern(
            f"{source!r} is not a regular expression taskflare can run: {_reason(exc, source)}"
        ) from None
    return Pattern(source, regexp)
