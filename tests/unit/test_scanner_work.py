"""Scanners over text that may be long and hostile do linear work. `hide_credentials`
runs over error messages and URLs (a server's reason, a pasted value). Its first form, one regular
expression, backtracked quadratically (41 s for 50 kB of `a`). The reference below is
that expression: the linear scanner must hide exactly what it hid."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskflare.backends.url import REDACTED, hide_credentials
from taskflare.backends.url import _hide_userinfo as hide_userinfo
from taskflare.errors import InvalidJobConfig
from taskflare.limits import parse_rate

_COLON, _AT, _SLASH = (rf"(?:{c}|%{h}|%25{h})" for c, h in ((":", "3A"), ("@", "40"), ("/", "2F")))
_PASSWORD_CHAR = r"[^\s'\"&=]"
REFERENCE = re.compile(
    rf"(?P<head>[A-Za-z][A-Za-z0-9+.-]*{_COLON}{_SLASH}{_SLASH}[^@\s/?#&]*?{_COLON})"
    rf"(?P<secret>{_PASSWORD_CHAR}*?)(?P<tail>{_AT})(?!{_PASSWORD_CHAR}*{_AT})",
    re.IGNORECASE,
)


def reference(text: str) -> str:
    return REFERENCE.sub(lambda m: m["head"] + (REDACTED if m["secret"] else "") + m["tail"], text)


# Pieces that make (and break) `scheme://user:password@`, raw and encoded.
PIECES = [
    "a", "B", "7", "+", ".", "-", ":", "/", "@", "%3A", "%3a", "%2F", "%253A", "%252F",
    "%40", "%2540", "%25", " ", "\n", "'", '"', "=", "&", "?", "#", "x", "é",
]  # fmt: skip


@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
def test_the_linear_scanner_hides_what_the_regular_expression_hid(text: str) -> None:
    assert hide_userinfo(text) == reference(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:sekrit@h/db", "postgresql://u:***@h/db"),
        ("x postgresql://u:se@krit@h/db y", "x postgresql://u:***@h/db y"),
        ("a://u:p@h and b%3A%2F%2Fv%3Aq%40h", "a://u:***@h and b%3A%2F%2Fv%3A***%40h"),
        ("a://u:'p@h", "a://u:'p@h"),  # a quote ends a password: nothing to hide there
        ("a://u:@h", "a://u:@h"),  # an empty password
        ("://u:p@h", "://u:p@h"),  # no scheme
    ],
)
def test_userinfo_examples(text: str, shown: str) -> None:
    assert hide_userinfo(text) == reference(text) == shown


HOSTILE: dict[str, Callable[[int], str]] = {
    "letters": lambda n: "a" * n,
    "schemes": lambda n: "a://" * (n // 4),
    "an open password": lambda n: "a://u:" + "x" * n,
    "empty userinfos": lambda n: "a://:@" * (n // 6),
    "at signs": lambda n: "a://u:" + "@" * n,
    "encoded separators": lambda n: "a:%2F%2F" * (n // 8),
    "quoted colons": lambda n: "a:%2F%2F" + "':" * (n // 2),
    "secret parameters": lambda n: "password=" * (n // 9),
}


def _cost(run: Callable[[], object]) -> float:
    """CPU seconds of this process for `run()` (not wall time: time spent waiting for a
    CPU on a loaded machine is not counted), the least of a few runs."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_input_costs_linear_work(shape: str) -> None:
    # Ten times the input, about ten times the work: a ratio, not a time limit. The
    # quadratic expression gave ratios near 100 (minutes at 200 kB).
    make = HOSTILE[shape]
    small_text, large_text = make(20_000), make(200_000)
    small = _cost(lambda: hide_credentials(small_text))
    large = _cost(lambda: hide_credentials(large_text))
    assert large / small < 35, f"{shape}: 20 kB {small:.4f}s, 200 kB {large:.4f}s"


def test_a_200_kb_hostile_message_is_redacted() -> None:
    text = "a://u:" + "@" * 200_000 + "host"
    assert hide_credentials(text) == "a://u:***@host"
    message = "could not connect: " + "a://" * 50_000 + " postgresql://app:sekrit@db/x"
    shown = hide_credentials(message)
    assert "sekrit" not in shown and shown.endswith("postgresql://app:***@db/x")


def _refused(text: str) -> None:
    with pytest.raises(InvalidJobConfig):
        parse_rate(text)


def test_a_rate_with_a_long_run_of_spaces_costs_linear_work() -> None:
    # `\s*(\d+)?\s*` after the `/` tried every split of the spaces: 186 s at 100 kB.
    small, large = (_cost(lambda n=n: _refused("1/" + " " * n + "!")) for n in (20_000, 200_000))
    assert large / small < 35, f"20 kB {small:.4f}s, 200 kB {large:.4f}s"


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100/s", (100, 1)), (" 3 / 10 s ", (3, 10)), ("5/ h", (5, 3600)), ("2/1.5m", (2, 90))],
)
def test_rates_still_parse(text: str, rate: tuple[float, float]) -> None:
    assert parse_rate(text) == rate
