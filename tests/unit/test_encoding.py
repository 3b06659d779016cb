"""Body encoding: content type names, per-type rules, and round trips (property-based)."""

from __future__ import annotations

import pickle
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskflare import BodyEncodingError, UnsupportedContentType
from taskflare.encoding import (
    NotStrictJson,
    decode_body,
    encode_body,
    loads_strict,
    normalize_content_type,
)

# What JSON (as orjson writes it) round-trips exactly: 64-bit ints, finite floats,
# text without lone surrogates, lists, objects with string keys.
json_text = st.text(st.characters(exclude_categories=("Cs",)))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(json_text, children, max_size=5)
    ),
    max_leaves=20,
)


@given(json_values)
def test_json_round_trip(value: Any) -> None:
    assert decode_body(encode_body(value, "json"), "json") == value


@given(st.text(st.characters(exclude_categories=("Cs",))))
def test_text_round_trip(value: str) -> None:
    data = encode_body(value, "text")
    assert data == value.encode("utf-8")
    assert decode_body(data, "text") == value


@given(st.binary())
def test_bytes_round_trip(value: bytes) -> None:
    assert decode_body(encode_body(value, "bytes"), "bytes") == value
    assert decode_body(encode_body(bytearray(value), "bytes"), "bytes") == value
    assert type(decode_body(encode_body(memoryview(value), "bytes"), "bytes")) is bytes


@given(json_values)
def test_pickle_round_trip(value: Any) -> None:
    data = encode_body(value, "pickle")
    assert pickle.loads(data) == value
    assert decode_body(data, "pickle") == value


def test_json_encoding_is_compact_utf8() -> None:
    assert encode_body({"a": [1, None]}, "json") == b'{"a":[1,null]}'
    assert encode_body(None, "json") == b"null"
    assert encode_body("é", "json") == '"é"'.encode()


@pytest.mark.parametrize("body", [{1, 2}, object(), b"bytes", 2**64, {1: 2}, "\ud800"])
def test_json_refuses_what_it_cannot_encode(body: Any) -> None:
    with pytest.raises(BodyEncodingError, match="JSON"):
        encode_body(body, "json")


@pytest.mark.parametrize("body", [b"x", 1, None, ["a"]])
def test_text_requires_str(body: Any) -> None:
    with pytest.raises(BodyEncodingError, match="requires a str"):
        encode_body(body, "text")


def test_text_refuses_lone_surrogates() -> None:
    with pytest.raises(BodyEncodingError):
        encode_body("\udc80", "text")


@pytest.mark.parametrize("body", ["x", 1, None, [1]])
def test_bytes_requires_bytes_like(body: Any) -> None:
    with pytest.raises(BodyEncodingError, match="bytes-like"):
        encode_body(body, "bytes")


def test_pickle_refuses_unpicklable() -> None:
    with pytest.raises(BodyEncodingError, match="pickled"):
        encode_body(lambda: None, "pickle")


@pytest.mark.parametrize(
    ("given_name", "expected"),
    [("json", "json"), ("JSON", "json"), ("Text", "text"), ("BYTES", "bytes")],
)
def test_content_type_names_are_case_insensitive(given_name: str, expected: str) -> None:
    assert normalize_content_type(given_name, allow_pickle=False, queue="q") == expected


def test_pickle_needs_the_queue_to_opt_in() -> None:
    with pytest.raises(UnsupportedContentType, match="allow_pickle"):
        normalize_content_type("pickle", allow_pickle=False, queue="q")
    assert normalize_content_type("PICKLE", allow_pickle=True, queue="q") == "pickle"


@pytest.mark.parametrize("name", ["xml", "v8", "", "json "])
def test_unknown_content_type_is_refused_naming_it(name: str) -> None:
    with pytest.raises(UnsupportedContentType) as info:
        normalize_content_type(name, allow_pickle=False, queue="q")
    assert repr(name) in str(info.value)


def test_unknown_content_type_message_mentions_pickle_only_when_allowed() -> None:
    with pytest.raises(UnsupportedContentType) as refused:
        normalize_content_type("xml", allow_pickle=False, queue="q")
    with pytest.raises(UnsupportedContentType) as allowed:
        normalize_content_type("xml", allow_pickle=True, queue="q")
    assert "pickle" not in str(refused.value)
    assert "pickle" in str(allowed.value)


@pytest.mark.parametrize("name", [None, 1, b"json"])
def test_non_string_content_type_is_refused(name: Any) -> None:
    with pytest.raises(UnsupportedContentType):
        normalize_content_type(name, allow_pickle=True, queue="q")


@pytest.mark.parametrize(
    ("text", "path", "number"),
    [
        ('{"id": 18446744073709551616}', "payload.id", "18446744073709551616"),
        ('{"a": [1, {"neg": -9223372036854775809}]}', "payload.a[1].neg", "-9223372036854775809"),
    ],
)
def test_an_integer_past_64_bits_is_refused_naming_it_not_read_as_a_float(
    text: str, path: str, number: str
) -> None:
    """orjson reads an integer past its 64-bit range as a float: the CLI stored 2**64 as
    1.8446744073709552e+19, another number than the one given, where the library and
    the HTTP API refuse it."""
    with pytest.raises(NotStrictJson, match=rf"^{re.escape(path)}: {number} is outside"):
        loads_strict(text, "payload")


def test_integers_at_the_edges_of_the_range_and_long_digit_strings_are_read_exactly() -> None:
    text = (
        '{"max": 18446744073709551615, "min": -9223372036854775808, "s": "1234567890123456789012"}'
    )
    assert loads_strict(text) == {
        "max": 2**64 - 1,
        "min": -(2**63),
        "s": "1234567890123456789012",
    }
