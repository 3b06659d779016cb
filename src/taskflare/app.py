"""`App`: the registry of queues and consumers, and the way to the database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .backends import open_backend, redact_url, resolve_database_url
from .backends.base import Backend, QueueSettings
from .background import DEFAULT_DRAIN_LIMIT, BackgroundTasks, to_awaitable
from .errors import InvalidQueueConfig, UnknownJobType, UnknownQueue
from .job_api import JobsAPI
from .jobs import JobType
from .portal import Portal
from .queue import Queue, QueueConfig
from .retention import Retention
from .scheduler import CronTrigger, ScheduledEvent, register_cron
from .webhooks import WebhookSource

T = TypeVar("T")
CronHandler = Callable[[ScheduledEvent], Any]


class App(JobsAPI):
    """A taskflare application: declare queues and consumers on it, then send and run workers.

    `database_url` defaults to `$TASKFLARE_DATABASE_URL`, else `sqlite:///taskflare.db`.
    Nothing connects until first use. An App is safe to use from any thread and from
    successive event loops; the `*_sync` methods run on a private loop of their own.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        retention: Retention | None = None,
        wait_until_limit: float = DEFAULT_DRAIN_LIMIT,
    ) -> None:
        self.database_url = resolve_database_url(database_url)
        self.retention = retention or Retention()
        self.background = BackgroundTasks(wait_until_limit)
        self.cron_triggers: dict[str, CronTrigger] = {}
        self.webhook_sources: dict[str, WebhookSource] = {}
        self._queues: dict[str, Queue] = {}
        self._job_types: dict[str, JobType] = {}
        self._backend: Backend | None = None
        self._declared: set[str] = set()
        self._lock = threading.Lock()
        self._portal = Portal()

    def __repr__(self) -> str:
        return f"App({redact_url(self.database_url)!r})"

    # -- declaration ------------------------------------------------------------------

    def queue(
        self,
        name: str,
        *,
        max_batch_size: int = 10,
        max_batch_timeout: float = 5.0,
        max_retries: int = 3,
        retry_delay: float = 0,
        dead_letter_queue: str | None = None,
        max_concurrency: int | None = None,
        visibility_timeout: float = 30.0,
        max_message_bytes: int = 131_072,
        max_batch_bytes: int = 262_144,
        allow_pickle: bool = False,
    ) -> Queue:
        """Declare a queue and its consumer settings; a bad value raises `InvalidQueueConfig`."""
        config = QueueConfig.create(
            name,
            max_batch_size=max_batch_size,
            max_batch_timeout=max_batch_timeout,
            max_retries=max_retries,
            retry_delay=retry_delay,
            dead_letter_queue=dead_letter_queue,
            max_concurrency=max_concurrency,
            visibility_timeout=visibility_timeout,
            max_message_bytes=max_message_bytes,
            max_batch_bytes=max_batch_bytes,
            allow_pickle=allow_pickle,
        )
        existing = self._queues.get(name)
        if existing is not None and not existing.implicit:
            raise InvalidQueueConfig(f"queue {name!r} is already declared in this app")
        queue = Queue(self, config)
        if existing is not None:
            queue.consumer_spec = existing.consumer_spec
            queue.job_types = existing.job_types
        self._queues[name] = queue
        if dead_letter_queue is not None and dead_letter_queue not in self._queues:
            self._queues[dead_letter_queue] = Queue(
                self, QueueConfig.create(dead_letter_queue), implicit=True
            )
        return queue

    def cron(
        self,
        expression: str,
        *,
        name: str | None = None,
        tz: str = "UTC",
        queue: str | None = None,
        misfire_grace: float = 60.0,
        max_attempts: int = 3,
    ) -> Callable[[CronHandler], CronHandler]:
        """Run the decorated function on a cron schedule: `@app.cron("0 0 * * *")`.

        The handler receives a `ScheduledEvent` (`cron`, `name`, `scheduled_time`). Each
        tick runs once across all workers, as a job on `queue` (so it is retried and has
        a history). A bad expression raises `InvalidCronExpression` naming the field.
        """

        def register(handler: CronHandler) -> CronHandler:
            trigger = register_cron(
                self,
                expression,
                handler,
                name=name,
                tz=tz,
                queue=queue,
                misfire_grace=misfire_grace,
                max_attempts=max_attempts,
            )
            self.cron_triggers[trigger.name] = trigger
            return handler

        return register

    def webhook(
        self,
        source: str,
        *,
        secret: str,
        job_type: str,
        scheme: str = "stripe",
        event_id_field: str = "id",
        tolerance: float = 300.0,
    ) -> WebhookSource:
        """Accept signed webhooks at `POST /webhooks/<source>` and enqueue each as `job_type`.

        `scheme` is "stripe" (`Stripe-Signature: t=...,v1=...`) or "hmac-sha256"
        (`X-Signature: sha256=...`). The event's id (body field `event_id_field`) is the
        job's idempotency key, so a redelivered webhook runs once.
        """
        if source in self.webhook_sources:
            raise InvalidQueueConfig(f"webhook source {source!r} is already configured")
        config = WebhookSource(source, secret, job_type, scheme, event_id_field, tolerance)
        self.webhook_sources[source] = config
        return config

    def wait_until(self, work: Any, *args: Any, durable: bool = False, **kwargs: Any) -> Any:
        """Run `work` (an awaitable, or a function and its arguments) in the background.

        Best effort: errors are logged, never raised here; a worker or server waits for
        pending work on shutdown (up to `wait_until_limit` seconds). With `durable=True`,
        `work` must be a registered job handler and the call enqueues it as a job instead
        (returns the enqueue task inside a running loop, else the `Job`).
        """
        if durable:
            return self._wait_until_durable(work, args, kwargs)
        awaitable = to_awaitable(work, args, kwargs)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = self._portal.loop()
        self.background.start(awaitable, loop)
        return None

    def _wait_until_durable(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        job_type = next((t for t in self._job_types.values() if t.handler is fn), None)
        if job_type is None:
            raise UnknownJobType(
                f"wait_until(..., durable=True) needs a function registered with @app.job; "
                f"{getattr(fn, '__qualname__', fn)!r} is not"
            )
        if len(args) > 1 or (args and kwargs):
            raise TypeError("a durable wait_until passes one payload argument to the job")
        payload = args[0] if args else (kwargs or None)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.enqueue_sync(job_type.name, payload)
        return asyncio.ensure_future(self.enqueue(job_type.name, payload))

    def get_queue(self, name: str) -> Queue:
        """The declared queue called `name`, or `UnknownQueue`."""
        try:
            return self._queues[name]
        except KeyError:
            known = ", ".join(sorted(self._queues)) or "none"
            raise UnknownQueue(f"no queue named {name!r} in this app (declared: {known})") from None

    @property
    def queues(self) -> dict[str, Queue]:
        """Every queue declared in this app (dead-letter queues included), by name."""
        return dict(self._queues)

    # -- storage ----------------------------------------------------------------------

    async def backend(self) -> Backend:
        """The backend for this app's database, opened on first use."""
        with self._lock:
            if self._backend is None:
                self._backend = open_backend(self.database_url)
            backend = self._backend
        pending = [q for name, q in self._queues.items() if name not in self._declared]
        if pending:
            await backend.queue_declare_many(
                [QueueSettings(q.name, q.config.to_json()) for q in pending]
            )
            self._declared.update(q.name for q in pending)
        return backend

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion from synchronous code (the sync twins use this)."""
        return self._portal.run(coro)

    async def close(self) -> None:
        """Close database connections; the app can be used again afterwards."""
        with self._lock:
            backend, self._backend = self._backend, None
            self._declared.clear()
        if backend is not None:
            await backend.close()

    def close_sync(self) -> None:
        """Blocking twin of `close`; waits for `wait_until` work; stops the private loop."""
        self.run_sync(self.background.drain())
        self.run_sync(self.close())
        self._portal.stop()
