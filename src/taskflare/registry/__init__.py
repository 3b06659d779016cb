"""The registry: everything an app declares (queues and consumers, job types, cron triggers,
webhook sources), and nothing else. It knows no backend and no worker; producers, the
worker and the admin surfaces read it, `App` fills it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..cron import InvalidCronExpression
from ..errors import (
    DuplicateConsumer,
    InvalidJobConfig,
    InvalidQueueConfig,
    InvalidWebhookConfig,
    InvalidWorkerConfig,
    JobRouteRefused,
    UnknownJobType,
    UnknownQueue,
)
from ..limits import Limit, RateLimit, queue_bucket, queue_limit
from ..webhooks import WebhookSource
from .hooks import Hooks
from .job_types import JobType
from .queues import DEFAULT_CONSUMER_TIMEOUT, BatchHandler, Consumer, QueueConfig
from .triggers import CronTrigger, ScheduledEvent

__all__ = [
    "DEFAULT_CONSUMER_TIMEOUT",
    "BatchHandler",
    "Consumer",
    "CronTrigger",
    "JobType",
    "QueueConfig",
    "QueueSpec",
    "Registry",
    "ScheduledEvent",
]

MESSAGES = "messages"
JOBS = "jobs"


@dataclass(slots=True)
class QueueSpec:
    """A declared queue: its settings and what consumes it (a batch consumer, or job types).

    `implicit` marks a queue created by naming it (a dead-letter queue, a job type's
    queue); declaring it explicitly later replaces its settings. `jobs` marks a queue
    declared as a job queue (`app.queue(name, jobs=True)`), which runs the jobs routed to
    it (`enqueue(..., queue=name)`) even with no job type of its own.
    """

    config: QueueConfig
    consumer: Consumer | None = None
    job_types: dict[str, JobType] = field(default_factory=dict)
    implicit: bool = False
    rate_limit: RateLimit | None = None
    jobs: bool = False
    # Consumed over HTTP only (a wrangler `type = "http_pull"` consumer): no batch consumer.
    pull_only: bool = False
    # The kind the database stores for a queue this app knows only from there (the app
    # that declared it has a consumer or job types this one lacks).
    stored_kind: str | None = None

    @property
    def name(self) -> str:
        """The queue's name."""
        return self.config.name

    def flow_limits(self) -> tuple[Limit, ...]:
        """Every limit a claim of this queue's jobs must respect (empty: none, and the
        claim is the plain one)."""
        limits = [queue_limit(self.name, self.rate_limit)] if self.rate_limit else []
        for job_type in self.job_types.values():
            if job_type.limits is not None:
                limits += job_type.limits.limits()
        return tuple(limits)

    def settings_json(self) -> str:
        """The queue's settings as stored for admin tools, with its kind (`jobs`,
        `messages`), its job types' flow-control declarations, their `max_attempts` and
        `priority`, and its flow limits (so a reader or producer without the app's code
        can show and apply them)."""
        settings: dict[str, Any] = orjson.loads(self.config.to_json())
        if self.kind is not None:
            settings["kind"] = self.kind
        if self.job_types:
            settings["job_types"] = {
                name: None if job_type.limits is None else job_type.limits.declaration()
                for name, job_type in self.job_types.items()
            }
            # What a job of each type is stored with when its enqueue names neither.
            settings["job_defaults"] = {
                name: {"max_attempts": job_type.max_attempts, "priority": job_type.priority}
                for name, job_type in self.job_types.items()
            }
        limits = self.flow_limits()
        if limits:
            settings["flow_limits"] = [
                [lim.family, lim.amount, lim.period, lim.burst] for lim in limits
            ]
        return orjson.dumps(settings).decode()

    def flow_keys(self, job_type: JobType | None, payload: Any, **keys: str | None) -> list[str]:
        """The buckets a job of `job_type` with this payload needs on this queue."""
        buckets = [queue_bucket(self.name)] if self.rate_limit else []
        if job_type is not None and job_type.limits is not None and job_type.limits.active:
            buckets += job_type.limits.buckets(payload, **keys)
        return buckets

    @property
    def pull_refusal(self) -> str | None:
        """Why a pull consumer may not pull this queue (None: it may): a job queue's jobs
        are run by taskflare workers, and a queue with a batch consumer has its one
        consumer (Cloudflare: one consumer per queue, a Worker or an HTTP pull one)."""
        kind = self.kind or self.stored_kind
        if kind == JOBS:
            return JOBS
        if kind == MESSAGES:
            return MESSAGES
        return None

    @property
    def kind(self) -> str | None:
        """`messages` (a batch consumer runs it), `jobs` (job types run on it, or it was
        declared a job queue) or None (declared, consumed elsewhere or not at all)."""
        if self.job_types or self.jobs:
            return JOBS
        return MESSAGES if self.consumer is not None else None


class Registry:
    """Every declaration of one app, by name."""

    def __init__(self) -> None:
        self.queues: dict[str, QueueSpec] = {}
        self.job_types: dict[str, JobType] = {}
        self.cron_triggers: dict[str, CronTrigger] = {}
        self.webhook_sources: dict[str, WebhookSource] = {}
        self.hooks = Hooks()

    # -- queues ---------------------------------------------------------------------------

    def declare_queue(
        self, config: QueueConfig, rate_limit: RateLimit | None = None, *, jobs: bool = False
    ) -> QueueSpec:
        """Declare a queue (its dead-letter queue too, implicitly, if not declared);
        `rate_limit` applies to the jobs it runs; `jobs`: a job queue even with no job
        type of its own (a target of `enqueue(..., queue=)`)."""
        existing = self.queues.get(config.name)
        if existing is not None and not existing.implicit:
            raise InvalidQueueConfig(f"queue {config.name!r} is already declared in this app")
        if jobs and existing is not None and existing.consumer is not None:
            raise InvalidQueueConfig(
                f"queue {config.name!r} has a message consumer; it cannot be a job queue"
            )
        spec = QueueSpec(config, rate_limit=rate_limit, jobs=jobs)
        if existing is not None:
            spec.consumer = existing.consumer
            spec.job_types = existing.job_types
        self.queues[config.name] = spec
        dlq = config.dead_letter_queue
        if dlq is not None and dlq not in self.queues:
            self.queues[dlq] = QueueSpec(QueueConfig.create(dlq), implicit=True)
        return spec

    def queue(self, name: str) -> QueueSpec:
        """The declared queue called `name`, or `UnknownQueue`."""
        try:
            return self.queues[name]
        except KeyError:
            known = ", ".join(sorted(self.queues)) or "none"
            raise UnknownQueue(f"no queue named {name!r} in this app (declared: {known})") from None

    def set_consumer(self, name: str, consumer: Consumer) -> None:
        """Make `consumer` the batch consumer of queue `name` (each queue has one)."""
        spec = self.queue(name)
        if spec.kind == JOBS:
            runs = ", ".join(spec.job_types) or "declared with jobs=True"
            raise DuplicateConsumer(
                f"queue {name!r} is a job queue ({runs}); "
                "a message consumer needs a queue of its own"
            )
        if spec.pull_only:
            raise DuplicateConsumer(
                f"queue {name!r} has an http_pull consumer (its wrangler file says so); "
                "each queue has exactly one consumer, a batch consumer or a pull consumer"
            )
        if spec.consumer is not None:
            raise DuplicateConsumer(
                f"queue {name!r} already has a consumer "
                f"({getattr(spec.consumer.handler, '__qualname__', '?')}); "
                "each queue has exactly one"
            )
        spec.consumer = consumer

    def set_pull_only(self, name: str) -> None:
        """Mark queue `name` as consumed over HTTP only (a wrangler `http_pull` consumer):
        `DuplicateConsumer` if it has a batch consumer or job types already."""
        self.check_pullable(name)
        self.queue(name).pull_only = True

    def check_pullable(self, name: str) -> None:
        """`DuplicateConsumer` unless queue `name` may take an http_pull consumer (it has
        no batch consumer and no job types)."""
        spec = self.queue(name)
        if spec.kind is not None:
            raise DuplicateConsumer(
                f"queue {name!r} has an http_pull consumer (its wrangler file says so) and "
                f"already runs {'job types' if spec.kind == JOBS else 'a batch consumer'}; "
                "each queue has exactly one consumer"
            )

    def runnable(self, names: Sequence[str] = ()) -> dict[str, QueueSpec]:
        """The queues a worker consumes: those named (each must have a consumer or job
        types), else every queue that has one."""
        if names:
            chosen = {name: self.queue(name) for name in names}
            idle = [n for n, q in chosen.items() if q.kind is None]
            if idle:
                raise InvalidWorkerConfig(
                    f"queue(s) {', '.join(idle)} have no consumer and are not job queues "
                    "(give a queue a consumer, a job type, or declare it with "
                    "app.queue(name, jobs=True) to run jobs enqueued to it)"
                )
            return chosen
        return {n: q for n, q in self.queues.items() if q.kind is not None}

    # -- job types ------------------------------------------------------------------------

    def add_job_type(self, job_type: JobType) -> None:
        """Register a job type on its queue (declared implicitly if new)."""
        if job_type.name in self.job_types:
            raise InvalidJobConfig(f"job type {job_type.name!r} is already registered")
        spec = self.queues.get(job_type.queue)
        if spec is None:
            # Jobs are delivered as soon as they are ready: no waiting for a batch to fill.
            config = QueueConfig.create(job_type.queue, max_batch_size=10, max_batch_timeout=0)
            spec = self.queues[job_type.queue] = QueueSpec(config, implicit=True)
        if spec.consumer is not None or spec.pull_only:
            which = "an http_pull consumer" if spec.pull_only else "a message consumer"
            raise InvalidJobConfig(
                f"queue {job_type.queue!r} has {which}; job types need a queue of their own"
            )
        spec.job_types[job_type.name] = job_type
        self.job_types[job_type.name] = job_type

    def claim_types(self, spec: QueueSpec) -> tuple[str, ...]:
        """The job types a worker of this app claims on job queue `spec`, sorted: the
        types declared on it, and every other type of the app that runs anywhere (jobs
        routed here with `enqueue(..., queue=)`), except those with rate or concurrency
        limits, which run only on their own queue (see `check_route`). Types this app
        lacks are never claimed: apps sharing a database leave each other's jobs alone."""
        return tuple(
            sorted(
                name
                for name, job_type in self.job_types.items()
                if name in spec.job_types or not routing_limited(job_type)
            )
        )

    def check_route(self, job_type: JobType, queue: str) -> None:
        """Raise unless a job of `job_type` may run on `queue`: `UnknownQueue` when `queue`
        is not a job queue of this app, `JobRouteRefused` when the type has rate or
        concurrency limits and `queue` is not its own (the claim counts those per queue).
        Both name `queue`."""
        # Messages name `queue` once, as the field (`message_for` respells it: `--queue`).
        spec = self.queues.get(queue)
        if spec is None:
            known = ", ".join(sorted(n for n, q in self.queues.items() if q.kind == JOBS))
            raise UnknownQueue(
                f"queue {queue!r} is not declared in this app (its job queues: {known or 'none'})",
                fields=("queue",),
            )
        if spec.kind != JOBS:
            raise UnknownQueue(
                f"queue {queue!r} runs no jobs: it has a message consumer, or neither a "
                "consumer nor job types (declare it with jobs=True to run jobs routed to it)",
                fields=("queue",),
            )
        if queue != job_type.queue and routing_limited(job_type):
            raise JobRouteRefused(
                f"queue {queue!r}: job type {job_type.name!r} has rate or concurrency limits, "
                f"so its jobs run only where it is declared ({job_type.queue!r})",
                fields=("queue",),
            )

    def job_type(self, name: str) -> JobType:
        """The registered job type `name`, or `UnknownJobType`."""
        try:
            return self.job_types[name]
        except KeyError:
            known = ", ".join(sorted(self.job_types)) or "none"
            raise UnknownJobType(f"unknown job type {name!r} (registered: {known})") from None

    def job_type_of_handler(self, handler: object) -> JobType | None:
        """The job type whose handler is `handler`, if any."""
        return next((t for t in self.job_types.values() if t.handler is handler), None)

    # -- cron and webhooks ----------------------------------------------------------------

    def add_cron(self, trigger: CronTrigger) -> None:
        """Register a trigger and the job type its ticks run as."""
        if trigger.name in self.cron_triggers:
            raise InvalidCronExpression(f"a cron trigger named {trigger.name!r} already exists")
        self.add_job_type(
            JobType.create(
                trigger.job_type,
                trigger.tick_handler(),
                queue=trigger.queue,
                max_attempts=trigger.max_attempts,
                timeout=None,
                priority=0,
                retry=None,
            )
        )
        self.cron_triggers[trigger.name] = trigger

    def cron_trigger(self, name: str) -> CronTrigger:
        """The trigger called `name`, else the one trigger whose expression `name` is (as
        Cloudflare's `/__scheduled?cron=` picks one), or `InvalidCronExpression` listing
        the declared ones (or the triggers sharing that expression)."""
        trigger = self.cron_triggers.get(name)
        if trigger is not None:
            return trigger
        same = sorted(n for n, t in self.cron_triggers.items() if t.schedule.expression == name)
        if len(same) == 1:
            return self.cron_triggers[same[0]]
        if same:
            raise InvalidCronExpression(
                f"{name!r} is the expression of {len(same)} triggers ({', '.join(same)}); "
                "name the one to fire"
            )
        known = ", ".join(sorted(self.cron_triggers)) or "none"
        raise InvalidCronExpression(f"no cron trigger named {name!r} (declared: {known})")

    def add_webhook(self, source: WebhookSource) -> None:
        """Accept signed webhooks from `source` (its job type must be registered by serve time)."""
        if source.name in self.webhook_sources:
            raise InvalidWebhookConfig(f"webhook source {source.name!r} is already configured")
        self.webhook_sources[source.name] = source

    def dead_letter_queue_of(self, name: str) -> str | None:
        """The dead-letter queue of queue `name`, if it has one."""
        spec = self.queues.get(name)
        return None if spec is None else spec.config.dead_letter_queue


def routing_limited(job_type: JobType) -> bool:
    """Whether `job_type` has rate or concurrency limits: the claim counts those per queue
    (a concurrency limit counts the leased jobs of the queue it claims from), so its jobs
    run only on the type's own queue, where every claim checks them."""
    return job_type.limits is not None and job_type.limits.active
