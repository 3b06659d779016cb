"""Flow-control declarations: rate limits, concurrency limits and unique jobs.

Declared on a job type (`@app.job(..., rate_limit=..., max_concurrency=...,
concurrency=..., unique=...)`) or a job queue (`app.queue(..., rate_limit=...)`) and
enforced by the database when a worker claims jobs, across every worker process and
machine. A job carries the *buckets* it needs, computed when it is enqueued: a bucket
is a limit's family (which declaration) plus a key (`""` for a limit without a key),
written `family|key`. A job without a limit carries none and costs nothing extra.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .backends.base import FlowLimit, JobEnqueueParams, NewMessage
from .errors import (
    AppCodeRequired,
    InvalidJobConfig,
    InvalidJobOption,
    InvalidMessage,
    JobRouteRefused,
    UniqueKeyMissing,
    UnknownQueue,
)
from .raised import describe

KeyFunction = Callable[[Any], Any]

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86_400.0}
# One way to match each space: `\s*(\d+)?\s*` after the `/` backtracked quadratically
# over a run of spaces (minutes for "1/" and 100 000 spaces).
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(?:(\d+(?:\.\d+)?)\s*)?([a-z]+)\s*$")

# Families: `r:<type>:<n>` (a job type's n-th rate limit), `r@<queue>` (a queue's rate
# limit), `c:<type>` (a type's max_concurrency), `c:<type>:<n>` (its n-th keyed one).
SEPARATOR = "|"
MAX_KEY_LENGTH = 200
# The largest burst a rate limit may declare (as the largest amount a period).
MAX_BURST = 1_000_000
# How long a unique job without a `period` holds its key at most [s] (a holder that is
# no longer in one of the states gives it up at once, whatever this says).
UNIQUE_HOLD_SECONDS = 10 * 365 * 86_400.0
# A worker waiting on a full concurrency limit looks again at least this often [s]
# (it also wakes when any job finishes).
CONCURRENCY_POLL = 0.25


def parse_rate(text: str) -> tuple[float, float]:
    """`"100/s"`, `"10/m"`, `"5/h"`, `"1000/d"`, `"3/10s"` → (amount, period [s]).

    Raises `InvalidJobConfig` naming the text for anything else.
    """
    match = _RATE.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise InvalidJobConfig(
            f"rate_limit {text!r} is not a rate; write it as N/s, N/m, N/h or N/d "
            "(e.g. '100/s', '10/m', '3/10s')"
        )
    amount = float(match.group(1))
    period = float(match.group(2) or 1) * unit
    if amount <= 0 or period <= 0 or amount > 1_000_000:
        raise InvalidJobConfig(f"rate_limit {text!r}: the amount must be 1..1000000 per period")
    return amount, period


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `rate` job starts (`"100/s"`, `"10/m"`, `"5/h"`), plus up to `burst` at
    once after a quiet spell (a token bucket of `burst` tokens refilled at `rate`;
    default: one period's worth). Over any window of T seconds at most
    `burst + rate * T` jobs start, across every worker.

    `key`: a function of the payload (the validated JSON data) giving the key to limit
    by, e.g. `lambda p: p["tenant"]`; each key has a bucket of its own. `per_key=True`
    without a function takes the key given at enqueue (`rate_key=`), which also
    overrides the function. `InvalidJobConfig` for a bad rate or burst.
    """

    rate: str
    key: KeyFunction | None = None
    burst: float | None = None
    per_key: bool = False
    amount: float = field(init=False, repr=False)
    period: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        amount, period = parse_rate(self.rate)
        object.__setattr__(self, "amount", amount)
        object.__setattr__(self, "period", period)
        burst = self.burst
        if burst is not None and (
            isinstance(burst, bool)
            or not isinstance(burst, (int, float))
            or not 1 <= burst <= MAX_BURST
        ):
            raise InvalidJobConfig(
                f"RateLimit burst must be a number from 1 to {MAX_BURST}, got {burst!r}"
            )
        if not isinstance(self.per_key, bool):
            raise InvalidJobConfig(f"RateLimit per_key must be True or False, got {self.per_key!r}")
        if self.key is not None and not callable(self.key):
            raise InvalidJobConfig(
                f"RateLimit key must be a function of the payload, got {self.key!r}"
            )

    @property
    def capacity(self) -> float:
        """The bucket's size (its burst) in jobs."""
        return float(self.burst) if self.burst is not None else max(1.0, self.amount)

    @property
    def keyed(self) -> bool:
        """True when each key has a bucket of its own."""
        return self.per_key or self.key is not None


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most `limit` jobs with the same key run at once, across every worker.

    `key`: a function of the payload, e.g. `lambda p: p["account"]`; without one the key
    comes from `concurrency_key=` at enqueue (which also overrides the function).
    `Concurrency(1, key=...)` runs each key's jobs one at a time, in enqueue order (for
    jobs of equal priority), like a sequence.
    """

    limit: int
    key: KeyFunction | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise InvalidJobConfig(f"Concurrency limit must be an integer >= 1, got {self.limit!r}")
        if self.key is not None and not callable(self.key):
            raise InvalidJobConfig(
                f"Concurrency key must be a function of the payload, got {self.key!r}"
            )


_STATES = {
    "pending": "ready",
    "processing": "leased",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
_BY = ("type", "queue", "payload")


@dataclass(frozen=True, slots=True)
class Unique:
    """A second enqueue returns the existing job instead of storing another one, while a
    job matching it is in one of `states` (and, with `period`, was enqueued less than
    `period` seconds ago).

    `by`: what makes jobs the same: any of `"type"`, `"queue"`, `"payload"`; `keys`
    narrows `"payload"` to those top-level fields. `states`: job statuses that hold the
    uniqueness (`pending`, `processing`, `completed`, `failed`, `cancelled`).
    `InvalidJobConfig` for anything else.
    """

    by: tuple[str, ...] = ("type", "payload")
    states: tuple[str, ...] = ("pending", "processing")
    period: float | None = None
    keys: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("by", "states"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence) or not value:
                raise InvalidJobConfig(f"Unique {name} must be a non-empty tuple, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        bad = [b for b in self.by if b not in _BY]
        if bad:
            raise InvalidJobConfig(f"Unique by {bad[0]!r} is unknown; use {', '.join(_BY)}")
        bad = [s for s in self.states if s not in _STATES]
        if bad:
            raise InvalidJobConfig(f"Unique state {bad[0]!r} is unknown; use {', '.join(_STATES)}")
        period = self.period
        if period is not None and (
            isinstance(period, bool)
            or not isinstance(period, (int, float))
            or not 0 < period <= UNIQUE_HOLD_SECONDS
        ):
            raise InvalidJobConfig(
                f"Unique period must be seconds > 0 (at most {UNIQUE_HOLD_SECONDS:g}), "
                f"got {period!r}"
            )
        if self.keys is not None:
            keys = self.keys
            if (
                isinstance(keys, str)
                or not isinstance(keys, Sequence)
                or not keys
                or not all(isinstance(k, str) for k in keys)
            ):
                raise InvalidJobConfig(
                    f"Unique keys must be a non-empty tuple of payload field names, got {keys!r}"
                )
            if "payload" not in self.by:
                raise InvalidJobConfig(
                    f"Unique keys narrow the payload, but by={self.by!r} does not name "
                    "'payload'; add it or drop keys"
                )
            object.__setattr__(self, "keys", tuple(keys))

    @property
    def stored_states(self) -> tuple[str, ...]:
        """The stored message states of `states`."""
        return tuple(_STATES[s] for s in self.states)


def unique_params(unique: Unique, message: NewMessage) -> JobEnqueueParams:
    """The enqueue parameters that make `message` unique: a key derived from what
    `unique.by` names (a digest of the canonical JSON), held while the job is in one of
    `unique.states`, for `unique.period` seconds at most. `InvalidPayload` naming the
    key and the job type when the payload lacks one of `unique.keys` (`UniqueKeyMissing`)."""
    parts: dict[str, Any] = {}
    if "type" in unique.by:
        parts["type"] = message.type
    if "queue" in unique.by:
        parts["queue"] = message.queue
    if "payload" in unique.by:
        payload = orjson.loads(message.body)
        if unique.keys is not None:
            missing = [k for k in unique.keys if not isinstance(payload, dict) or k not in payload]
            if missing:
                raise UniqueKeyMissing(
                    f"job type {message.type!r} is unique by payload key {missing[0]!r}, "
                    f"which this payload does not have",
                    fields=("payload",),
                )
            payload = {k: payload[k] for k in unique.keys}
        parts["payload"] = payload
    digest = hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()
    keyed = NewMessage(
        id=message.id,
        queue=message.queue,
        body=message.body,
        content_type=message.content_type,
        delay_seconds=message.delay_seconds,
        priority=message.priority,
        type=message.type,
        max_attempts=message.max_attempts,
        idempotency_key=f"unique:{digest[:40]}",
        correlation_id=message.correlation_id,
        batch_id=message.batch_id,
        flow_keys=message.flow_keys,
    )
    return JobEnqueueParams(
        keyed,
        unique.period if unique.period is not None else UNIQUE_HOLD_SECONDS,
        guard_states=unique.stored_states,
        key_scope=message.type if "type" in unique.by else "*",
    )


Limit = FlowLimit


@dataclass(frozen=True, slots=True)
class JobLimits:
    """The flow control of one job type (all optional)."""

    type: str
    rate_limits: tuple[RateLimit, ...] = ()
    max_concurrency: int | None = None
    concurrency: tuple[Concurrency, ...] = ()
    unique: Unique | None = None
    default_retry_after: float = 1.0

    @property
    def active(self) -> bool:
        """True when the type's jobs carry buckets (a claim must check limits)."""
        return bool(self.rate_limits or self.max_concurrency or self.concurrency)

    @property
    def adaptive(self) -> bool:
        """An HTTP 429 from this type's handler backs off its rate-limit keys."""
        return bool(self.rate_limits)

    def limits(self) -> list[Limit]:
        """The limits of this type for the claim statement."""
        out = [
            Limit(f"r:{self.type}:{i}", r.amount, r.period, r.capacity)
            for i, r in enumerate(self.rate_limits)
        ]
        if self.max_concurrency:
            out.append(Limit(f"c:{self.type}", float(self.max_concurrency), 0.0, 0.0))
        out += [
            Limit(f"c:{self.type}:{i}", float(c.limit), 0.0, 0.0)
            for i, c in enumerate(self.concurrency)
        ]
        return out

    def declaration(self) -> dict[str, Any]:
        """The limits as JSON data, stored with the queue's settings (key functions are
        stored only as being there: a producer without the app's code cannot run them)."""
        unique = self.unique
        return {
            "rate_limits": [
                {
                    "rate": r.rate,
                    "burst": r.burst,
                    "per_key": r.per_key,
                    "key_function": r.key is not None,
                }
                for r in self.rate_limits
            ],
            "max_concurrency": self.max_concurrency,
            "concurrency": [
                {"limit": c.limit, "key_function": c.key is not None} for c in self.concurrency
            ],
            "unique": None
            if unique is None
            else {
                "by": list(unique.by),
                "states": list(unique.states),
                "period": unique.period,
                "keys": None if unique.keys is None else list(unique.keys),
            },
        }

    @classmethod
    def from_declaration(cls, type: str, data: Any) -> JobLimits:
        """The limits a `declaration` stored, for a producer without the app's code: a
        key function becomes one that raises `AppCodeRequired` (give the key instead).
        `InvalidJobConfig` if the data is not a declaration."""
        try:
            unique = data.get("unique")
            return cls(
                type,
                rate_limits=tuple(
                    RateLimit(
                        r["rate"],
                        key=_CodeKey(type, "rate", "rate_key") if r["key_function"] else None,
                        burst=r["burst"],
                        per_key=bool(r["per_key"]),
                    )
                    for r in data.get("rate_limits", ())
                ),
                max_concurrency=data.get("max_concurrency"),
                concurrency=tuple(
                    Concurrency(
                        c["limit"],
                        key=_CodeKey(type, "concurrency", "concurrency_key")
                        if c["key_function"]
                        else None,
                    )
                    for c in data.get("concurrency", ())
                ),
                unique=None
                if unique is None
                else Unique(
                    by=tuple(unique["by"]),
                    states=tuple(unique["states"]),
                    period=unique["period"],
                    keys=None if unique["keys"] is None else tuple(unique["keys"]),
                ),
            )
        except (AttributeError, KeyError, TypeError) as exc:
            raise InvalidJobConfig(
                f"the stored limits of job type {type!r} cannot be read ({exc!r})"
            ) from None

    def buckets(
        self, payload: Any, *, rate_key: str | None = None, concurrency_key: str | None = None
    ) -> list[str]:
        """The buckets a job with this payload needs (`InvalidMessage` if a key function
        fails or gives no usable key)."""
        out = []
        for i, r in enumerate(self.rate_limits):
            key = ""
            if r.keyed:
                key = rate_key if rate_key is not None else _key(r.key, payload, "rate_limit")
            out.append(f"r:{self.type}:{i}{SEPARATOR}{key}")
        if self.max_concurrency:
            out.append(f"c:{self.type}{SEPARATOR}")
        for i, c in enumerate(self.concurrency):
            key = (
                concurrency_key
                if concurrency_key is not None
                else _key(c.key, payload, "concurrency")
            )
            out.append(f"c:{self.type}:{i}{SEPARATOR}{key}")
        return out


class _CodeKey:
    """A key function a producer without the app's code cannot run: it refuses."""

    def __init__(self, type: str, what: str, field: str) -> None:
        self.type, self.what, self.field = type, what, field

    def __call__(self, payload: Any) -> Any:
        raise app_code_required(
            self.type, f"a {self.what} limit keyed by a function of its payload", self.field
        )


def app_code_required(type: str, what: str, field: str | None = None) -> AppCodeRequired:
    """The refusal of a job a producer cannot limit as its type says without the app's code."""
    given = f", or give {field}" if field else ""
    return AppCodeRequired(
        f"job type {type!r} has {what}, which needs the app's code to apply; enqueue it "
        f"with the app loaded (on the command line: --app module:app){given}",
        fields=(field,) if field else (),
    )


def queue_limit(queue: str, rate: RateLimit) -> Limit:
    """A queue's rate limit for the claim statement."""
    return Limit(f"r@{queue}", rate.amount, rate.period, rate.capacity)


def queue_bucket(queue: str) -> str:
    """The bucket every job of a rate-limited queue needs."""
    return f"r@{queue}{SEPARATOR}"


def _key(function: KeyFunction | None, payload: Any, what: str) -> str:
    if function is None:
        return ""
    try:
        value = function(payload)
    except AppCodeRequired:
        raise
    except Exception as exc:
        raise InvalidMessage(
            f"the {what} key function failed on this payload: {describe(exc)}"
        ) from None
    return check_key(value, what)


def check_key(value: Any, what: str, field: str | None = None) -> str:
    """A key as stored: str/int text of 1..200 characters without control characters or
    lone surrogates (`InvalidMessage` otherwise, naming `field` when the caller gave the
    key as an argument: `rate_key`, `concurrency_key`)."""
    name = field or f"{what} key"
    fields = (field,) if field else ()
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidMessage(f"{name} must be a string or an integer, got {value!r}", fields=fields)
    text = str(value)
    if not 0 < len(text) <= MAX_KEY_LENGTH or any(
        unicodedata.category(ch) in ("Cc", "Cs") for ch in text
    ):
        raise InvalidMessage(
            f"{name} must be 1 to {MAX_KEY_LENGTH} characters without control characters, "
            f"got {text[:40]!r}",
            fields=fields,
        )
    return text


def check_keys_apply(
    type: str,
    limits: JobLimits | None,
    rate_key: str | None,
    concurrency_key: str | None,
    source: str = "",
) -> None:
    """Refuse a key given at enqueue that no limit of the job type would use
    (`InvalidJobOption` naming `rate_key` or `concurrency_key`): the job would be stored
    unlimited while its caller believes it limited by that key. `rate_key` needs a keyed
    rate limit (`RateLimit(..., per_key=True)` or `key=`), `concurrency_key` a
    `Concurrency(...)` (`max_concurrency` counts every job of the type as one).
    `source`: where the limits come from, said after them."""
    if rate_key is not None and not (limits and any(r.keyed for r in limits.rate_limits)):
        has = "rate limits, but none per key" if limits and limits.rate_limits else "no rate limit"
        raise InvalidJobOption(
            f"rate_key was given, but job type {type!r} has {has}{source} (a key needs "
            "RateLimit(..., per_key=True) or key=...): the job would not be limited by it",
            fields=("rate_key",),
        )
    if concurrency_key is not None and not (limits and limits.concurrency):
        has = (
            "only max_concurrency, one count for all its jobs"
            if limits and limits.max_concurrency
            else "no keyed concurrency limit"
        )
        raise InvalidJobOption(
            f"concurrency_key was given, but job type {type!r} has {has}{source} (a key "
            "needs concurrency=Concurrency(n)): the job would not be limited by it",
            fields=("concurrency_key",),
        )


def as_rate_limits(value: object, where: str) -> tuple[RateLimit, ...]:
    """`"100/s"`, a `RateLimit`, or a list of them, as a tuple of `RateLimit`."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(RateLimit(item))
        elif isinstance(item, RateLimit):
            out.append(item)
        else:
            raise InvalidJobConfig(f"{where} rate_limit must be 'N/s' or a RateLimit, got {item!r}")
    return tuple(out)


def as_concurrency(value: object) -> tuple[Concurrency, ...]:
    """A `Concurrency` or a list of them."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    bad = [i for i in items if not isinstance(i, Concurrency)]
    if bad:
        raise InvalidJobConfig(f"concurrency must be a Concurrency(limit, key=...), got {bad[0]!r}")
    return tuple(items)


def next_token_at(tokens: float, updated_at: float, limit: Limit) -> float:
    """When a rate bucket holding `tokens` at `updated_at` has one whole token again."""
    if tokens >= 1:
        return updated_at
    return updated_at + (1 - tokens) * limit.period / limit.amount


def ceil_div(a: float, b: float) -> int:
    """Whole periods needed (used in docs/tests arithmetic)."""
    return math.ceil(a / b)


@dataclass(frozen=True, slots=True)
class StoredFlow:
    """The flow control and kind of every queue as the app's workers and server stored it
    with the queue's settings: what a producer without the app's code (`taskflare jobs
    enqueue` without `--app`) needs to apply the same limits and uniqueness."""

    type_queues: dict[str, str] = field(default_factory=dict)
    type_limits: dict[str, JobLimits] = field(default_factory=dict)
    # Types with stored limits but no stored declaration (settings of an older version).
    undeclared: frozenset[str] = frozenset()
    rate_limited: frozenset[str] = frozenset()
    kinds: dict[str, str] = field(default_factory=dict)
    # (priority, max_attempts) each type declared (absent: stored by an older version).
    type_defaults: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: dict[str, dict[str, Any]]) -> StoredFlow:
        """From each queue's stored settings (JSON data), by queue name."""
        type_queues: dict[str, str] = {}
        type_limits: dict[str, JobLimits] = {}
        undeclared: set[str] = set()
        rate_limited: set[str] = set()
        kinds: dict[str, str] = {}
        type_defaults: dict[str, tuple[int, int]] = {}
        for queue, data in settings.items():
            if data.get("kind"):
                kinds[queue] = str(data["kind"])
            for type, values in (data.get("job_defaults") or {}).items():
                defaults = _stored_defaults(values)
                if defaults is not None:
                    type_defaults.setdefault(type, defaults)
            declared = data.get("job_types") or {}
            for type, limits in declared.items():
                type_queues.setdefault(type, queue)
                if limits:
                    type_limits[type] = JobLimits.from_declaration(type, limits)
            for row in data.get("flow_limits") or ():
                family = str(row[0])
                if family.startswith("r@"):
                    rate_limited.add(queue)
                    continue
                body = family[2:]
                head, _, tail = body.rpartition(":")
                type = head if tail.isdigit() and head else body
                if type not in declared:
                    undeclared.add(type)
                    type_queues.setdefault(type, queue)
        return cls(
            type_queues,
            type_limits,
            frozenset(undeclared),
            frozenset(rate_limited),
            kinds,
            type_defaults,
        )

    def check_route(self, type: str, home: str, queue: str) -> None:
        """Raise unless a job of `type` (whose own queue is `home`) may go to `queue`, as
        the app's code would decide (`Registry.check_route`) from what is stored:
        `UnknownQueue` for a queue stored as a message queue, `JobRouteRefused` for a
        type with stored rate or concurrency limits. A queue nothing is stored about is
        taken as it is (its workers may not have started yet)."""
        if queue == home:
            return
        if self.kinds.get(queue) == "messages":
            raise UnknownQueue(
                f"queue {queue!r} runs no jobs: it has a message consumer", fields=("queue",)
            )
        limits = self.type_limits.get(type)
        if type in self.undeclared or (limits is not None and limits.active):
            raise JobRouteRefused(
                f"queue {queue!r}: job type {type!r} has rate or concurrency limits, so its "
                f"jobs run only where it is declared ({home!r})",
                fields=("queue",),
            )

    def limits(self, type: str) -> JobLimits | None:
        """The stored limits of `type` (None: none); `AppCodeRequired` if limits were
        stored without their declaration."""
        if type in self.undeclared and type not in self.type_limits:
            raise app_code_required(type, "flow limits stored without their declaration")
        return self.type_limits.get(type)

    def buckets(
        self,
        type: str,
        queue: str,
        payload: Any,
        *,
        rate_key: str | None = None,
        concurrency_key: str | None = None,
    ) -> tuple[str, ...] | None:
        """The buckets a job of `type` on `queue` needs, as the app's code would compute
        them (None: none); `AppCodeRequired` for a key only the app's code can compute."""
        out = [queue_bucket(queue)] if queue in self.rate_limited else []
        limits = self.limits(type)
        if limits is not None and limits.active:
            out += limits.buckets(payload, rate_key=rate_key, concurrency_key=concurrency_key)
        return tuple(out) or None


def _stored_defaults(values: Any) -> tuple[int, int] | None:
    """(priority, max_attempts) from a type's stored `job_defaults` entry; None when it is
    not one (the defaults then apply, as for settings stored by an older version)."""
    if not isinstance(values, dict):
        return None
    priority, attempts = values.get("priority"), values.get("max_attempts")
    if type(priority) is not int or type(attempts) is not int or attempts < 1:
        return None
    return priority, attempts
