"""`check_delay`: a finite, non-negative number of seconds; everything else is `InvalidDelay`."""

from __future__ import annotations

import math

import pytest

from taskflare import InvalidDelay, InvalidMessage
from taskflare.messages import MAX_DELAY_SECONDS, check_delay


@pytest.mark.parametrize("good", [0, 0.0, 1, 2.5, 86_400, MAX_DELAY_SECONDS])
def test_accepts_non_negative_numbers(good: float) -> None:
    assert check_delay(good) == float(good)
    assert type(check_delay(good)) is float


@pytest.mark.parametrize(
    "bad",
    [
        -1,
        -0.0001,
        math.nan,
        math.inf,
        -math.inf,
        "1",
        b"1",
        None,
        [1],
        True,
        False,
        MAX_DELAY_SECONDS + 1,
    ],
    ids=repr,
)
def test_refuses_everything_else(bad: object) -> None:
    with pytest.raises(InvalidDelay):
        check_delay(bad)


def test_invalid_delay_is_an_invalid_message_and_a_value_error() -> None:
    assert issubclass(InvalidDelay, InvalidMessage)
    assert issubclass(InvalidDelay, ValueError)


def test_error_names_the_argument_and_the_value() -> None:
    with pytest.raises(InvalidDelay, match=r"retry delay_seconds.*-3"):
        check_delay(-3, "retry delay_seconds")
