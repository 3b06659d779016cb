"""Message bodies: the content types, how each is encoded for storage and decoded for consumers."""

from __future__ import annotations

import math
import pickle
from typing import Any, Final

import orjson

from .errors import BodyEncodingError, UnsupportedContentType

JSON: Final = "json"
TEXT: Final = "text"
BYTES: Final = "bytes"
PICKLE: Final = "pickle"
CONTENT_TYPES: Final = (JSON, TEXT, BYTES, PICKLE)


def normalize_content_type(content_type: object, *, allow_pickle: bool, queue: str) -> str:
    """Return the lower-cased content type, or raise naming the value that was refused."""
    if not isinstance(content_type, str):
        raise UnsupportedContentType(
            f"content_type must be a string such as 'json', got {type(content_type).__name__}"
        )
    name = content_type.lower()
    if name not in CONTENT_TYPES:
        raise UnsupportedContentType(
            f"unsupported content type {content_type!r}; use one of json, text, bytes"
            + (", pickle" if allow_pickle else "")
        )
    if name == PICKLE and not allow_pickle:
        raise UnsupportedContentType(
            f"content type 'pickle' is not enabled on queue {queue!r}; "
            "declare the queue with allow_pickle=True to opt in"
        )
    return name


def non_finite(value: Any, data: bytes, what: str) -> str | None:
    """Where `value` (encoded by orjson as `data`) holds a NaN or an infinity, which JSON
    cannot carry (orjson writes them as null): e.g. `payload.items[2]`; None if nowhere.

    Costs one byte search when `data` has no `null` (the value is only walked then)."""
    if b"null" not in data:
        return None
    return _find_non_finite(value, what)


def _find_non_finite(value: Any, path: str) -> str | None:
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find_non_finite(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_non_finite(item, f"{path}[{index}]")
            if found:
                return found
    elif value is None or isinstance(value, (str, int)):
        return None
    elif not isinstance(value, type) and (names := getattr(value, "__dataclass_fields__", None)):
        for name in names:
            found = _find_non_finite(getattr(value, name), f"{path}.{name}")
            if found:
                return found
    return None


def not_finite_message(path: str) -> str:
    """The refusal of a NaN or infinity at `path`."""
    return f"{path} is NaN or infinite, which JSON cannot carry (it would arrive as null)"


def encode_body(body: Any, content_type: str) -> bytes:
    """Encode `body` as `content_type` (already normalized) for storage
    (`BodyEncodingError` for what cannot be encoded, NaN and infinities in JSON too)."""
    if content_type == JSON:
        try:
            data = orjson.dumps(body)
        except TypeError as exc:
            raise BodyEncodingError(f"body cannot be encoded as JSON: {exc}") from exc
        path = non_finite(body, data, "body")
        if path is not None:
            raise BodyEncodingError(not_finite_message(path), fields=("body",))
        return data
    if content_type == TEXT:
        if not isinstance(body, str):
            raise BodyEncodingError(
                f"content type 'text' requires a str body, got {type(body).__name__}"
            )
        try:
            return body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BodyEncodingError(f"body cannot be encoded as UTF-8 text: {exc}") from exc
    if content_type == BYTES:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise BodyEncodingError(
                f"content type 'bytes' requires a bytes-like body, got {type(body).__name__}"
            )
        return bytes(body)
    try:
        return pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise BodyEncodingError(f"body cannot be pickled: {exc}") from exc


def decode_body(data: bytes, content_type: str) -> Any:
    """Decode a stored body back into the value the producer sent."""
    if content_type == JSON:
        return orjson.loads(data)
    if content_type == TEXT:
        return bytes(data).decode("utf-8")
    if content_type == BYTES:
        return bytes(data)
    return pickle.loads(data)
