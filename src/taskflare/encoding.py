"""Message bodies: the content types, how each is encoded for storage and decoded for consumers."""

from __future__ import annotations

import json
import math
import pickle
import re
import sys
from typing import Any, Final

import orjson

from .errors import BodyEncodingError, TaskflareError, UnsupportedContentType

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
    found = _find_non_finite(value, what)
    return None if found is None else found[0]


def _find_non_finite(value: Any, path: str) -> tuple[str, float] | None:
    """The first NaN or infinity in `value` and its path (`path` for `value` itself)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    found: tuple[str, float] | None = None
    if isinstance(value, dict):
        for key, item in value.items():
            if found := _find_non_finite(item, f"{path}.{key}" if path else str(key)):
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if found := _find_non_finite(item, f"{path}[{index}]"):
                return found
    elif value is None or isinstance(value, (str, int)):
        return None
    elif (fields := _fields_of(value)) is not None:
        return _find_non_finite(fields, path)
    return None


def _fields_of(value: Any) -> dict[str, Any] | None:
    """The fields of a dataclass or pydantic model instance by name (what orjson and
    `_to_json` write for it); None for anything else."""
    if _is_model(value):
        fields: dict[str, Any] = value.model_dump()
        return fields
    if not isinstance(value, type) and (names := getattr(value, "__dataclass_fields__", None)):
        return {name: getattr(value, name) for name in names}
    return None


def _is_model(value: Any) -> bool:
    """Whether `value` is a pydantic model instance (pydantic is imported only if the
    program uses it, so a program without it pays nothing)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def _to_json(value: Any) -> Any:
    """orjson's `default`: a pydantic model as its JSON data (`model_dump(mode="json")`),
    as Celery's `pydantic=True` returns a task's model; anything else orjson cannot
    write stays refused."""
    if _is_model(value):
        return value.model_dump(mode="json")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def not_finite_message(path: str) -> str:
    """The refusal of a NaN or infinity at `path`."""
    return f"{path} is NaN or infinite, which JSON cannot carry (it would arrive as null)"


def encode_json(
    value: Any, what: str, error: type[TaskflareError], *, context: str = "", field: str = ""
) -> bytes:
    """`value` as the JSON stored for it: every user value written to the database (message
    bodies, job payloads and results, `ctx.once` results, documents) goes through here.

    Raises `error` (a `TaskflareError` class, with `fields=(field or what,)`) when `value`
    is not JSON or holds a NaN or an infinity, naming where (`payload.items[2]`);
    `context` starts the message (`"job type 'x': "`)."""
    fields = (field or what,)
    try:
        data = orjson.dumps(value, default=_to_json)
    except TypeError as exc:
        raise error(f"{context}{what} is not JSON: {exc}", fields=fields) from None
    path = non_finite(value, data, what)
    if path is not None:
        raise error(context + not_finite_message(path), fields=fields)
    return data


class NotStrictJson(ValueError):
    """Text that is not JSON as RFC 8259 has it: `path` names where a NaN, an `Infinity` or
    a number too large for a float is (None when the text is otherwise not JSON)."""

    def __init__(self, detail: str, path: str | None = None, *, message: str = "") -> None:
        self.detail = detail
        self.path = path
        where = path or "the value"
        super().__init__(
            message
            or (
                f"not valid JSON ({detail})"
                if path is None
                else f"{where}: {detail} is not a JSON number (send null, or a string)"
            )
        )


# A run of 19 digits: the shortest integer orjson may read as a float (below -2**63).
_LONG_DIGITS = re.compile(rb"\d{19}")
INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson reads and writes as an integer


def _refuse_wide_ints(data: bytes | str, what: str) -> None:
    """`NotStrictJson` naming the first integer outside `INT_RANGE`: orjson reads one as
    a float, so 2**64 was stored as 1.8446744073709552e+19, another number than sent
    (and the library, which writes with orjson, refuses it)."""
    try:
        exact = json.loads(data)
    except (ValueError, RecursionError):
        return
    found = _find_wide_int(exact, what)
    if found is not None:
        path, number = found
        raise NotStrictJson(
            str(number),
            path,
            message=f"{path or 'the value'}: {number} is outside the integer range JSON is "
            f"stored with ({INT_RANGE[0]} to {INT_RANGE[1]}); send it as a string",
        )


def _find_wide_int(value: Any, path: str) -> tuple[str, int] | None:
    """The first int outside `INT_RANGE` in parsed JSON, and its path."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not INT_RANGE[0] <= item <= INT_RANGE[1]:
            return at, item
        if isinstance(item, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{at}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def loads_strict(data: bytes | str, what: str = "") -> Any:
    """Parse JSON as RFC 8259 has it, so what is stored is what was sent; else
    `NotStrictJson`, naming for a NaN, an `Infinity` or a number too large for a float
    (which lenient parsers, Python's `json` among them, turn into infinity) where it is
    below `what`: `payload.items[2]: NaN is not a JSON number`."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        detail = str(exc)
    else:
        if _LONG_DIGITS.search(data if isinstance(data, bytes) else data.encode()):
            _refuse_wide_ints(data, what)
        return value
    try:
        lenient = json.loads(data)
    except (ValueError, RecursionError):
        raise NotStrictJson(detail) from None
    if found := _find_non_finite(lenient, what):
        path, number = found
        spelled = "NaN" if math.isnan(number) else ("-" if number < 0 else "") + "Infinity"
        raise NotStrictJson(spelled, path)
    raise NotStrictJson(detail)


def encode_body(body: Any, content_type: str) -> bytes:
    """Encode `body` as `content_type` (already normalized) for storage
    (`BodyEncodingError` for what cannot be encoded, NaN and infinities in JSON too)."""
    if content_type == JSON:
        return encode_json(body, "body", BodyEncodingError)
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
