"""Array parameters are sent as PostgreSQL array literals: every value a statement can
carry must come back exactly as it went in."""

from __future__ import annotations

import math

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import PG_URL, postgres_skip_reason
from taskflare.backends.postgres.arrays import array_literal

pytestmark = pytest.mark.skipif(
    postgres_skip_reason() is not None, reason=postgres_skip_reason() or ""
)

# Text PostgreSQL can store: any character but NUL (refused before it gets here).
pg_text = st.text(alphabet=st.characters(blacklist_characters="\x00", codec="utf-8"))


@pytest.fixture(scope="module")
def conn() -> psycopg.Connection[tuple[object, ...]]:
    with psycopg.connect(PG_URL, autocommit=True) as c:
        yield c


def round_trip(
    conn: psycopg.Connection[tuple[object, ...]], values: list[object], pg_type: str
) -> list[object]:
    row = conn.execute(f"SELECT %s::{pg_type}[]", [array_literal(values)]).fetchone()
    assert row is not None
    return list(row[0])  # type: ignore[call-overload]


def test_awkward_text_round_trips(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    values: list[object] = [
        "",
        "NULL",
        None,
        'say "hi"',
        "back\\slash",
        "{a,b}",
        " x ",
        "é✓😀",
        "a\nb\tc",
    ]
    assert round_trip(conn, values, "text") == values


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), pg_text), max_size=20))
def test_any_text_round_trips(
    conn: psycopg.Connection[tuple[object, ...]], values: list[object]
) -> None:
    assert round_trip(conn, values, "text") == values


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=64)), max_size=10))
def test_bytes_round_trip(
    conn: psycopg.Connection[tuple[object, ...]], values: list[object]
) -> None:
    assert round_trip(conn, values, "bytea") == values


def test_numbers_and_booleans_round_trip(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    floats: list[object] = [0.0, -1.5, 1e-300, 1.7976931348623157e308, 0.1, None, math.inf]
    assert round_trip(conn, floats, "float8") == floats
    assert math.isnan(round_trip(conn, [math.nan], "float8")[0])  # type: ignore[arg-type]
    assert round_trip(conn, [0, -7, 2**31 - 1, None], "integer") == [0, -7, 2**31 - 1, None]
    assert round_trip(conn, [True, False, None], "boolean") == [True, False, None]


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(TypeError, match="dict"):
        array_literal([{"a": 1}])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=10))
def test_lists_of_bytes_only_round_trip(
    conn: psycopg.Connection[tuple[object, ...]], values: list[object]
) -> None:
    assert round_trip(conn, values, "bytea") == values


def test_lists_of_one_type_round_trip(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """The one-pass writers of an all-bytes, all-int, all-float or all-NULL list."""
    for pg_type in ("text", "bytea", "integer", "float8"):
        assert round_trip(conn, [None] * 3, pg_type) == [None] * 3
    assert round_trip(conn, [1, -2, 2**31 - 1], "integer") == [1, -2, 2**31 - 1]
    assert round_trip(conn, [b"", b'\\"\x00', b"{}"], "bytea") == [b"", b'\\"\x00', b"{}"]
    assert round_trip(conn, [0.5, -0.0, math.inf], "float8") == [0.5, -0.0, math.inf]
    mixed: list[object] = [1, None, 2.5]
    assert round_trip(conn, mixed, "float8") == [1.0, None, 2.5]
