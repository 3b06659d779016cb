"""Job types: `@app.job("send-email")` registers a handler, its defaults and its payload model.

The payload is validated at enqueue time against the handler's annotation (a pydantic
model, dataclass or TypedDict); an unannotated (or `dict`/`Any`) payload is taken as it is.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..encoding import encode_json
from ..errors import InvalidJobConfig, InvalidMessage, InvalidPayload, TaskflareError
from ..limits import JobLimits
from ..numeric import as_float
from ..retry import Backoff
from ..text import check_name

if TYPE_CHECKING:
    from pydantic import TypeAdapter

JobHandler = Callable[..., Any]

_UNVALIDATED = (inspect.Parameter.empty, Any, dict, object, typing.Mapping)


def _payload_adapter(handler: JobHandler) -> TypeAdapter[Any] | None:
    """A pydantic adapter for the handler's payload annotation, or None when it has none."""
    params = list(inspect.signature(handler).parameters.values())
    if not params:
        raise InvalidJobConfig("a job handler takes the payload (and optionally ctx)")
    try:
        hints = typing.get_type_hints(handler)
    except Exception:
        hints = {}
    annotation = hints.get(params[0].name, inspect.Parameter.empty)
    if annotation in _UNVALIDATED or typing.get_origin(annotation) in (dict, typing.Mapping):
        return None
    from pydantic import PydanticUserError, TypeAdapter

    try:
        return TypeAdapter(annotation)
    except PydanticUserError as exc:
        # e.g. `typing.TypedDict` before Python 3.12: say so at registration, not at enqueue.
        raise InvalidJobConfig(
            f"cannot validate payloads annotated {annotation!r} "
            f"(handler {getattr(handler, '__qualname__', handler)!r}): {exc}"
        ) from exc


@dataclass(frozen=True, slots=True)
class JobType:
    """A registered job type: its handler and defaults."""

    name: str
    handler: JobHandler
    queue: str
    max_attempts: int
    timeout: float | None
    priority: int
    retry: Backoff
    adapter: TypeAdapter[Any] | None
    is_async: bool
    takes_context: bool
    refuse_extra: bool = True
    limits: JobLimits | None = None

    @classmethod
    def create(
        cls,
        name: str,
        handler: JobHandler,
        *,
        queue: str,
        max_attempts: int,
        timeout: float | None,
        priority: int,
        retry: Backoff | None,
        limits: JobLimits | None = None,
    ) -> JobType:
        """Validate the options and inspect the handler."""
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidJobConfig(f"job type name must be a non-empty string, got {name!r}")
        try:  # what enqueue checks, so that a type registered can also be enqueued
            check_name(name, f"job type name {name!r}", max_length=200)
        except InvalidMessage as exc:
            raise InvalidJobConfig(str(exc), fields=("name",)) from None
        check_max_attempts(max_attempts)
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            # NaN too: asyncio.timeout(nan) expires at once; an int past a float's range
            # is an infinity here, refused like one.
            or not 0 < as_float(timeout) < math.inf
        ):
            raise InvalidJobConfig(
                f"timeout must be a positive number of seconds (None: no limit), got {timeout!r}"
            )
        check_priority(priority)
        if retry is not None and not isinstance(retry, Backoff):
            raise InvalidJobConfig(f"retry must be a taskflare.Backoff, got {retry!r}")
        positional = [
            p
            for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        adapter = _payload_adapter(handler)
        return cls(
            name=name,
            handler=handler,
            queue=queue,
            max_attempts=max_attempts,
            timeout=None if timeout is None else float(timeout),
            priority=priority,
            retry=retry or Backoff(),
            adapter=adapter,
            is_async=inspect.iscoroutinefunction(handler),
            takes_context=len(positional) >= 2,
            refuse_extra=adapter is not None and _extra_setting(handler) is None,
            limits=limits if limits is not None else JobLimits(name),
        )

    def validate(self, payload: Any) -> Any:
        """Check `payload` against the handler's model; return it as JSON-ready data.

        A field the model does not have is refused (`InvalidPayload` naming it) rather
        than silently dropped, unless the model says what to do with extra fields
        (pydantic's `extra="ignore"` or `"allow"`).
        """
        if self.adapter is None:
            return payload
        from pydantic import ValidationError

        try:
            value = self.adapter.validate_python(payload)
        except ValidationError as exc:
            raise InvalidPayload(_describe(self.name, exc)) from None
        data = self.adapter.dump_python(value, mode="json")
        if self.refuse_extra:
            dropped = _dropped_fields(payload, self.adapter.dump_python(value, by_alias=True))
            if dropped:
                raise InvalidPayload(
                    f"invalid payload for job type {self.name!r}: unknown field(s) "
                    f"{', '.join(dropped)} (the model has no such field; declare it, or set "
                    "extra='ignore' or 'allow' in the model's config)"
                )
        return data

    def encode(self, payload: Any) -> bytes:
        """Validate and serialise a payload for storage."""
        return encode_payload(self.name, self.validate(payload))

    def load(self, body: bytes) -> Any:
        """Turn a stored payload into the handler's argument (a model instance if typed)."""
        data = orjson.loads(body)
        if self.adapter is None:
            return data
        return self.adapter.validate_python(data)


def encode_payload(type: str, data: Any) -> bytes:
    """`data` as a stored payload of job type `type`, or `InvalidPayload` naming where it
    is not JSON or holds a NaN or an infinity."""
    return encode_json(data, "payload", InvalidPayload, context=f"job type {type!r}: ")


def _extra_setting(handler: JobHandler) -> str | None:
    """What the payload model itself says about extra fields, if anything."""
    params = list(inspect.signature(handler).parameters.values())
    try:
        annotation = typing.get_type_hints(handler).get(params[0].name)
    except Exception:
        return None
    config = getattr(annotation, "model_config", None) or getattr(
        annotation, "__pydantic_config__", None
    )
    if isinstance(config, dict):
        value = config.get("extra")
        return None if value is None else str(value)
    return None


def _dropped_fields(given: Any, kept: Any, path: str = "") -> list[str]:
    """Keys of `given` (at any depth) that validation dropped from `kept`."""
    if isinstance(given, dict) and isinstance(kept, dict):
        dropped = []
        for key, value in given.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in kept:
                dropped.append(where)
            else:
                dropped.extend(_dropped_fields(value, kept[key], where))
        return dropped
    if isinstance(given, (list, tuple)) and isinstance(kept, (list, tuple)):
        return [
            d
            for i, (a, b) in enumerate(zip(given, kept, strict=False))
            for d in _dropped_fields(a, b, f"{path}[{i}]")
        ]
    return []


def _describe(type_name: str, exc: Any) -> str:
    problems = []
    for error in exc.errors()[:5]:
        location = ".".join(str(part) for part in error.get("loc", ())) or "(payload)"
        problems.append(f"{location}: {error.get('msg', 'invalid')}")
    return f"invalid payload for job type {type_name!r}: " + "; ".join(problems)


def check_max_attempts(value: object, error: type[TaskflareError] = InvalidJobConfig) -> int:
    """1..1000 attempts; else `error` (`InvalidJobConfig` for a declaration)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise error(
            f"max_attempts must be an integer from 1 to 1000, got {value!r}",
            fields=("max_attempts",),
        )
    return value


def check_priority(value: object, error: type[TaskflareError] = InvalidJobConfig) -> int:
    """An integer from -1 000 000 to 1 000 000; higher runs first."""
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 1_000_000:
        raise error(
            f"priority must be an integer from -1,000,000 to 1,000,000 (higher runs first), "
            f"got {value!r}",
            fields=("priority",),
        )
    return value
