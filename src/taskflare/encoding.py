"""Message bodies: the content types, how each is encoded for storage and decoded for consumers."""

from __future__ import annotations

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


def encode_body(body: Any, content_type: str) -> bytes:
    """Encode `body` as `content_type` (already normalized) for storage."""
    if content_type == JSON:
        try:
            return orjson.dumps(body)
        except TypeError as exc:
            raise BodyEncodingError(f"body cannot be encoded as JSON: {exc}") from exc
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
