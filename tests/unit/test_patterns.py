"""User-supplied regular expressions (taskflare.patterns): RE2, linear in the text."""

from __future__ import annotations

import re

import pytest

from taskflare.contrib.crawl import Rules
from taskflare.patterns import MAX_PATTERN_CHARS, InvalidPattern, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "url", "found"),
    [
        (r"/page/\d+$", "https://e.com/page/12", True),
        (r"/page/\d+$", "https://e.com/page/12/x", False),
        (r"\.(pdf|jpe?g)$", "https://e.com/a.JPG", False),
        (r"(?i)\.(pdf|jpe?g)$", "https://e.com/a.JPG", True),
        (r"^https://(www\.)?e\.com/", "https://www.e.com/", True),
        (r"[?&]sort=", "https://e.com/list?page=2&sort=asc", True),
        (r"\pL+\.html", "https://e.com/été.html", True),
    ],
)
def test_a_pattern_searches_as_re_does(pattern: str, url: str, found: bool) -> None:
    assert compile_pattern(pattern).search(url) is found
    if "\\p" not in pattern:
        assert (re.search(pattern, url) is not None) is found


def test_a_catastrophic_pattern_runs_in_linear_time() -> None:
    """`re` would backtrack 2**60 times here; RE2 answers at once (the suite's per-test
    timeout fails a regression instead of hanging)."""
    pattern = compile_pattern(r"(a+)+$")
    assert pattern.search("https://e.com/" + "a" * 60)
    assert not pattern.search("https://e.com/" + "a" * 60 + "!")
    assert not compile_pattern(r"(x+x+)+y").search("x" * 10_000)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(", "missing \\)"),
        ("(?=a)b", "look-ahead"),
        ("(?<!a)b", "look-behind"),
        (r"(a)\1", "backreferences"),
        (r"(?P<n>a)(?P=n)", "backreferences"),
        (r"a\Z", r"write \\z"),
        ("a++", "possessive"),
        ("(?x) a", "inline flags"),
        ("a{1001}", "repetition size"),
        (r"(?:[\pL\pN]{30}){30}", "more than 2 MiB"),
        ("a" * (MAX_PATTERN_CHARS + 1), "too long; the limit is 1000"),
    ],
)
def test_a_pattern_re2_does_not_run_is_refused_saying_why(pattern: str, why: str) -> None:
    with pytest.raises(InvalidPattern, match=why) as raised:
        compile_pattern(pattern)
    assert isinstance(raised.value, ValueError)


def test_stored_rules_with_a_pattern_re2_refuses_do_not_load() -> None:
    """A page job stored before patterns ran on RE2 fails (permanently), naming the pattern."""
    rules = {"crawl": "c", "namespace": "n", "root": "https://e.com/", "maxPages": 5}
    rules |= {"sameSite": True, "include": ["(?=x)"]}
    with pytest.raises(InvalidPattern, match=r"'\(\?=x\)'.*look-ahead"):
        Rules.from_json(rules)
