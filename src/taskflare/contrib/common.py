"""What the built-in job types share: settings from the environment, job options, the
registration object `App.use` installs, sinks, and how an HTTP answer becomes a retry."""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import InvalidJobConfig
from ..registry import JobType
from ..retry import Backoff, PermanentError, RetryAfter, retry_after_seconds

if TYPE_CHECKING:
    from ..app import App

# A sink receives one namespace and a chunk of (key, JSON value) records; it must be an
# upsert by key (a retried job writes the same records again). The default writes to
# taskflare's document store: `app.namespace(namespace).put_many(records)`.
Sink = Callable[[str, list[tuple[str, Any]]], Awaitable[None]]

# The longest wait a server's `Retry-After` gets from a built-in job type [s].
MAX_RETRY_AFTER = 3600.0


class ContribSettings(BaseSettings):
    """Base of every job type's settings: fields read from `TASKFLARE_<FIELD>` environment
    variables when not given; secrets are `SecretStr` (shown as `**********`)."""

    model_config = SettingsConfigDict(env_prefix="TASKFLARE_", extra="ignore", frozen=True)


class Payload(BaseModel):
    """Base of every payload model: unknown fields are refused (naming them), and a payload
    is stored with the field names the caller used."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True, validate_by_name=False)


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How a built-in type is registered: its job type name, queue, attempts, timeout [s],
    default priority and backoff between attempts."""

    name: str
    queue: str
    max_attempts: int
    timeout: float | None
    priority: int = 0
    retry: Backoff = field(default_factory=Backoff)
    max_concurrency: int | None = None


def register(app: App, options: JobOptions, handler: Callable[..., Any]) -> JobType:
    """Register `handler` as `options.name` on `app` (its queue declared with
    `options.max_concurrency` when the app has not declared that queue itself)."""
    if options.max_concurrency is not None and options.queue not in app.registry.queues:
        app.queue(
            options.queue,
            max_batch_size=10,
            max_batch_timeout=0,
            max_concurrency=options.max_concurrency,
        )
    app.job(
        options.name,
        queue=options.queue,
        max_attempts=options.max_attempts,
        timeout=options.timeout,
        priority=options.priority,
        retry=options.retry,
    )(handler)
    return app.job_type(options.name)


def namespace_sink(app: App) -> Sink:
    """The default sink: upsert into the app's document store, 1000 records a transaction."""

    async def write(namespace: str, records: list[tuple[str, Any]]) -> None:
        store = app.namespace(namespace)
        for start in range(0, len(records), 1000):
            await store.put_many(records[start : start + 1000])

    return write


def check_sink(sink: object) -> Sink | None:
    """A user sink must be an async callable (or None for the document store)."""
    if sink is not None and not callable(sink):
        raise InvalidJobConfig(f"sink must be an async callable (namespace, records), got {sink!r}")
    return sink


def raise_for_http_status(
    status: int, headers: Any, what: str, detail: str = "", *, retry_statuses: Sequence[int] = ()
) -> None:
    """Turn a non-2xx answer into taskflare's outcomes: 408, 429 and 5xx raise
    `RuntimeError`, retried with the job's backoff (`RetryAfter` when a 429 or 503 has a
    usable `Retry-After`: its delay, at most an hour, or the backoff if longer); other 4xx
    `PermanentError`."""
    if 200 <= status < 300:
        return
    message = f"{what} answered {status}" + (f": {detail}" if detail else "")
    if status in (408, 429) or status >= 500 or status in retry_statuses:
        delay = None
        if status in (429, 503):
            delay = retry_after_seconds(headers.get("retry-after"), cap=MAX_RETRY_AFTER)
        if delay is not None:  # the wait is this or the job's backoff, the longer
            raise RetryAfter(delay, message)
        raise RuntimeError(message)
    raise PermanentError(message)


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every given secret (a password, an API key) replaced by `***`: for
    messages that quote what another server answered, which may echo a credential."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def one_line(value: str, what: str) -> str:
    """`value` if it can be a header's value: no line break of any kind (CR, LF, VT, FF,
    NEL, U+2028/9...) and no other control character but tab; `ValueError` naming `what`."""
    for char in value:
        if char != "\t" and unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            raise ValueError(
                f"{what} must be one line of text without control characters (found {char!r})"
            )
    return value


def refuse_repeats(
    values: Iterable[str | None], why: str, *, fold: Callable[[str], str] | None = None
) -> None:
    """`ValueError` for the first value of `values` given twice, naming it and the
    positions of both (`'k' is given twice (items 0 and 2); <why>`): for payload lists
    whose items would overwrite one another (a store's keys, header names). `fold`: what
    makes two values the same (`str.lower` for header names); None values are skipped."""
    first: dict[str, tuple[int, str]] = {}
    for index, value in enumerate(values):
        if value is None:
            continue
        earlier, seen = first.setdefault(fold(value) if fold else value, (index, value))
        if earlier != index:
            what = f"{value!r} is" if seen == value else f"{seen!r} and {value!r} are"
            raise ValueError(f"{what} given twice (items {earlier} and {index}); {why}")


def refuse_repeated_headers(headers: Iterable[str]) -> None:
    """`ValueError` for a header name given twice in any case (`X-Tag` and `x-tag` are one
    header: both would be sent, and a receiver keeps either, or joins them)."""
    refuse_repeats(headers, "header names are case-insensitive: give each once", fold=str.lower)


def jittered(seconds: float) -> float:
    """`seconds` spread over [seconds/2, seconds], so deferred jobs do not return together."""
    return seconds / 2 + random.uniform(0, seconds / 2)


def utc_now_iso() -> str:
    """Now, as an ISO 8601 UTC time ending in Z."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
