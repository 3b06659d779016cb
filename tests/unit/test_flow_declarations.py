"""Flow-control declarations: rates parse, bad values are refused with typed errors naming
them, and a job's buckets come from its payload or the keys given at enqueue."""

from __future__ import annotations

import math
from typing import Any

import pytest

from taskflare import (
    App,
    Concurrency,
    InvalidJobConfig,
    InvalidMessage,
    InvalidQueueConfig,
    RateLimit,
    Unique,
)
from taskflare.limits import JobLimits, check_key, parse_rate


@pytest.mark.parametrize(
    ("text", "amount", "period"),
    [("100/s", 100, 1), ("10/m", 10, 60), ("5/h", 5, 3600), ("3/10s", 3, 10), ("1/d", 1, 86400)],
)
def test_rates_parse(text: str, amount: float, period: float) -> None:
    assert parse_rate(text) == (amount, period)


@pytest.mark.parametrize("text", ["100", "0/s", "ten/s", "5/fortnight", "-1/s"])
def test_bad_rates_name_the_text(text: str) -> None:
    with pytest.raises(InvalidJobConfig, match="rate_limit"):
        parse_rate(text)


def test_bad_declarations_are_typed_errors() -> None:
    with pytest.raises(InvalidJobConfig, match="burst"):
        RateLimit("1/s", burst=0)
    with pytest.raises(InvalidJobConfig, match="Concurrency limit"):
        Concurrency(0)
    app = App("sqlite:///:memory:")
    with pytest.raises(InvalidJobConfig, match="max_concurrency"):
        app.job("x", max_concurrency=0)
    with pytest.raises(InvalidJobConfig, match="'\\|'"):
        app.job("a|b", max_concurrency=1)
    with pytest.raises(InvalidQueueConfig, match="no key"):
        app.queue("q", rate_limit=RateLimit("1/s", key=lambda p: p))
    # One rate a queue: a list used to be cut to its first item, the stricter second one
    # never enforced.
    for many in (["100/s", "1/s"], ("100/s",)):
        with pytest.raises(InvalidQueueConfig, match="rate_limit takes one rate"):
            app.queue("q", rate_limit=many)  # type: ignore[arg-type]
    assert "q" not in app.registry.queues


def test_buckets_come_from_the_payload_or_the_keys_given() -> None:
    limits = JobLimits(
        "sync",
        rate_limits=(RateLimit("10/s"), RateLimit("1/s", key=lambda p: p["tenant"])),
        max_concurrency=3,
        concurrency=(Concurrency(1, key=lambda p: p["account"]),),
    )
    assert limits.buckets({"tenant": "t", "account": 7}) == [
        "r:sync:0|",
        "r:sync:1|t",
        "c:sync|",
        "c:sync:0|7",
    ]
    assert limits.buckets({"tenant": "t", "account": 7}, rate_key="x", concurrency_key="y") == [
        "r:sync:0|",
        "r:sync:1|x",
        "c:sync|",
        "c:sync:0|y",
    ]
    with pytest.raises(InvalidMessage, match="key function failed"):
        limits.buckets({})


# Every number a declaration takes is refused when it is not a finite number in range
# (NaN compares false with everything, so a bare `< 1` lets it through), and every
# collection when it is a string (a str is a sequence of its characters).
@pytest.mark.parametrize(
    ("make", "names"),
    [
        (lambda: RateLimit("1/s", burst=math.nan), "burst"),
        (lambda: RateLimit("1/s", burst=math.inf), "burst"),
        (lambda: RateLimit("1/s", burst=10**12), "burst"),
        (lambda: RateLimit("1/s", per_key="yes"), "per_key"),
        (lambda: Unique(period=math.nan), "period"),
        (lambda: Unique(period=math.inf), "period"),
        (lambda: Unique(keys="user"), "keys"),  # type: ignore[arg-type]
        (lambda: Unique(keys=()), "keys"),
        (lambda: Unique(keys=(1,)), "keys"),  # type: ignore[arg-type]
        (lambda: Unique(by=("type",), keys=("user",)), "keys"),
    ],
)
def test_non_finite_numbers_and_strings_for_tuples_are_refused(make: Any, names: str) -> None:
    with pytest.raises(InvalidJobConfig, match=names):
        make()


@pytest.mark.parametrize("key", ["", "a\x7fb", "a\x85b", "\ud800", "x" * 201])
def test_a_key_is_one_to_200_characters_without_control_characters(key: str) -> None:
    with pytest.raises(InvalidMessage, match="rate_key") as caught:
        check_key(key, "rate", "rate_key")
    assert caught.value.fields == ("rate_key",)
    with pytest.raises(InvalidMessage, match="rate_limit key"):
        JobLimits("t", rate_limits=(RateLimit("1/s", key=lambda p: p),)).buckets(key)
    assert check_key("acme \u00e9\u202e", "rate") == "acme \u00e9\u202e"  # printable elsewhere
