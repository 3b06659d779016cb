"""`App`: the composition root. Declare queues, job types, crons and webhooks on it; it holds
the registry, opens the backend, and hands producers, workers and readers what they need.

Nothing below calls back into `App`: `Queue`, `Job` and the job client hold a narrow
storage handle (the app), the worker takes the app's registry and backend, the read
model the registry and storage.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .backends.base import (
    Backend,
    NamespaceCount,
    QueueDeclareParams,
    QueueDeleteParams,
    QueueSettings,
)
from .backends.opener import open_backend
from .backends.url import redact_url, resolve_database_url
from .background import DEFAULT_DRAIN_LIMIT, BackgroundTasks, to_awaitable
from .documents import Namespace
from .errors import (
    InvalidConfig,
    InvalidJobConfig,
    InvalidQueueConfig,
    UnknownJobType,
    UnknownQueue,
)
from .job_client import JobClient
from .jobs import JobBatch
from .limits import Concurrency, JobLimits, RateLimit, Unique, as_concurrency, as_rate_limits
from .portal import Portal
from .queue import Queue
from .readmodel import ReadModel
from .registry import JobType, QueueConfig, Registry
from .registry.hooks import Listener, Middleware, check_event
from .registry.job_types import JobHandler
from .registry.triggers import CronHandler, CronTrigger
from .registry.wrangler_check import wrangler_problems
from .retention import Retention
from .retry import Backoff
from .webhooks import DEFAULT_REPLAY_WINDOW, DEFAULT_TOLERANCE, STRIPE, WebhookSource
from .wrangler import WranglerConfig, load_wrangler

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("taskflare")


def _sync_twin(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[App, P], T]:
    """The blocking twin of an async `App` method (runs on the app's private loop)."""

    @functools.wraps(method)
    def twin(self: App, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self.run_sync(method(self, *args, **kwargs))

    twin.__name__ = f"{method.__name__}_sync"
    twin.__qualname__ = f"App.{twin.__name__}"
    twin.__doc__ = f"Blocking twin of `{method.__name__}`, for code that is not async."
    return twin


def _jobs(method: Callable[Concatenate[JobClient, P], R]) -> Callable[Concatenate[App, P], R]:
    """`App.<name>` as the job client's method of that name (same signature and doc)."""

    @functools.wraps(method)
    def delegate(self: App, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self.jobs, *args, **kwargs)

    return delegate


class Extension(Protocol):
    """Something `App.use` installs: a set of job types with their settings (the built-in
    ones in `taskflare.contrib`), or your own."""

    def install(self, app: App) -> None:
        """Register what this extension provides on `app`."""
        ...


class App:
    """A taskflare application: declare queues, job types and crons on it, then send,
    enqueue and run workers.

    `database_url` defaults to `$TASKFLARE_DATABASE_URL`, else `sqlite:///taskflare.db`.
    Nothing connects until first use; a missing database (SQLite file, PostgreSQL
    schema) is created then, unless `create_database=False` (then `DatabaseNotFound`,
    a `BackendUnavailable`, on first use). `retention` says how long
    finished jobs are kept; `wait_until_limit` [s] how long shutdown waits for
    `wait_until` work. An App is safe to use from any thread and from successive event
    loops; the `*_sync` methods run on a private loop of their own.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        retention: Retention | None = None,
        wait_until_limit: float = DEFAULT_DRAIN_LIMIT,
        create_database: bool = True,
    ) -> None:
        self.database_url = resolve_database_url(database_url)
        self.create_database = create_database
        self.retention = retention or Retention()
        self.background = BackgroundTasks(wait_until_limit)
        self.registry = Registry()
        self.jobs = JobClient(self.registry, self)
        self.read = ReadModel(self.registry, self, self.jobs)
        self._backend: Backend | None = None
        self._handles: dict[str, Queue] = {}
        # Queues this app knows only from the database (`stored_queue`), not from its code.
        self._stored_only: set[str] = set()
        self._lock = threading.Lock()
        self._portal = Portal(at_exit=self._close_backend)

    def __repr__(self) -> str:
        return f"App({redact_url(self.database_url)!r})"

    # -- declaration ----------------------------------------------------------------------

    def queue(
        self,
        name: str,
        *,
        max_batch_size: int = 10,
        max_batch_timeout: float = 5.0,
        max_retries: int = 3,
        retry_delay: float = 0,
        delivery_delay: float = 0,
        dead_letter_queue: str | None = None,
        max_concurrency: int | None = None,
        visibility_timeout: float = 30.0,
        max_message_bytes: int = 131_072,
        max_batch_bytes: int = 262_144,
        allow_pickle: bool = False,
        rate_limit: str | RateLimit | None = None,
        jobs: bool = False,
    ) -> Queue:
        """Declare a queue and its consumer settings (Cloudflare's names and limits).

        `max_batch_size` messages per batch (1-100); `max_batch_timeout` seconds a batch
        waits to fill (0-60); `max_retries` redeliveries after the first (0-100);
        `retry_delay` seconds before a retried message comes back; `delivery_delay`
        seconds every message sent waits unless its send gives a delay (0 included:
        Cloudflare's queue-level delivery delay, 0-86400); `dead_letter_queue`
        where messages go after their last attempt; `max_concurrency` batches of this
        queue running at once per worker; `visibility_timeout` seconds a delivery stays
        leased without a heartbeat; `max_message_bytes`/`max_batch_bytes` size limits.
        `rate_limit` (`"100/s"` or a `RateLimit` without a key): job starts per period
        across all workers, for every job type run on this queue. `jobs=True`: a job
        queue even with no job type of its own, which runs the jobs enqueued to it with
        `enqueue(..., queue=name)` (`taskflare worker` consumes it).
        A bad value raises `InvalidQueueConfig` naming it.
        """
        if not isinstance(jobs, bool):
            raise InvalidQueueConfig(
                f"queue {name!r}: jobs must be True or False, got {jobs!r}", fields=("jobs",)
            )
        if isinstance(rate_limit, (list, tuple)):
            # A queue has one rate limit: a list was cut to its first item before, so a
            # stricter limit later in it was silently never enforced.
            raise InvalidQueueConfig(
                f"queue {name!r}: rate_limit takes one rate ('100/s' or a RateLimit), got "
                f"{rate_limit!r}; put further limits on the job types",
                fields=("rate_limit",),
            )
        rates = as_rate_limits(rate_limit, f"queue {name!r}")
        if any(r.keyed for r in rates):
            raise InvalidQueueConfig(
                f"queue {name!r}: a queue's rate_limit has no key; put keyed limits on the job type"
            )
        config = QueueConfig.create(
            name,
            max_batch_size=max_batch_size,
            max_batch_timeout=max_batch_timeout,
            max_retries=max_retries,
            retry_delay=retry_delay,
            delivery_delay=delivery_delay,
            dead_letter_queue=dead_letter_queue,
            max_concurrency=max_concurrency,
            visibility_timeout=visibility_timeout,
            max_message_bytes=max_message_bytes,
            max_batch_bytes=max_batch_bytes,
            allow_pickle=allow_pickle,
        )
        self.registry.declare_queue(config, rates[0] if rates else None, jobs=jobs)
        return self._handle(name)

    def _handle(self, name: str) -> Queue:
        """The one `Queue` object of queue `name` (the same object every time)."""
        handle = self._handles.get(name)
        if handle is None:
            handle = self._handles[name] = Queue(self, self.registry, name)
        return handle

    def job(
        self,
        name: str,
        *,
        queue: str = "default",
        max_attempts: int = 3,
        timeout: float | None = None,
        priority: int = 0,
        retry: Backoff | None = None,
        rate_limit: str | RateLimit | Sequence[str | RateLimit] | None = None,
        max_concurrency: int | None = None,
        concurrency: Concurrency | Sequence[Concurrency] | None = None,
        unique: Unique | None = None,
    ) -> Callable[[JobHandler], JobHandler]:
        """Register the decorated function as the handler of job type `name`.

        `queue`: where its jobs run (a queue of its own, declared implicitly);
        `max_attempts`: deliveries before it fails (1-1000); `timeout` [s] per attempt;
        `priority`: the default (higher first); `retry`: the backoff between attempts.
        Flow control (enforced by the database across all workers, see
        docs/flow-control.md): `rate_limit` (`"100/s"`, a `RateLimit`, or several: all
        must allow a start), `max_concurrency` (jobs of this type running at once),
        `concurrency` (`Concurrency(n, key=...)`: per key), `unique` (a `Unique`).
        The handler takes the payload (validated against its annotation: a pydantic
        model, dataclass or TypedDict) and optionally a `JobContext`.
        """
        if max_concurrency is not None and (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise InvalidJobConfig(
                f"max_concurrency must be an integer >= 1, got {max_concurrency!r}"
            )
        if unique is not None and not isinstance(unique, Unique):
            raise InvalidJobConfig(f"unique must be a taskflare.Unique, got {unique!r}")
        limits = JobLimits(
            name,
            rate_limits=as_rate_limits(rate_limit, f"job type {name!r}"),
            max_concurrency=max_concurrency,
            concurrency=as_concurrency(concurrency),
            unique=unique,
        )

        if limits.active and "|" in name:
            raise InvalidJobConfig(
                f"job type {name!r}: a type with limits cannot have '|' in its name"
            )

        def register(handler: JobHandler) -> JobHandler:
            self.registry.add_job_type(
                JobType.create(
                    name,
                    handler,
                    queue=queue,
                    max_attempts=max_attempts,
                    timeout=timeout,
                    priority=priority,
                    retry=retry,
                    limits=limits,
                )
            )
            return handler

        return register

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
        a history). A tick found more than `misfire_grace` seconds late is skipped (the
        latest late tick within it runs once). A bad expression raises
        `InvalidCronExpression` naming the field.
        """

        def register(handler: CronHandler) -> CronHandler:
            self.registry.add_cron(
                CronTrigger.create(
                    expression,
                    handler,
                    name=name,
                    tz=tz,
                    queue=queue,
                    misfire_grace=misfire_grace,
                    max_attempts=max_attempts,
                )
            )
            return handler

        return register

    def webhook(
        self,
        source: str,
        *,
        secret: str,
        job_type: str,
        scheme: str = STRIPE,
        event_id_field: str = "id",
        tolerance: float = DEFAULT_TOLERANCE,
        replay_window: float = DEFAULT_REPLAY_WINDOW,
    ) -> WebhookSource:
        """Accept signed webhooks at `POST /webhooks/<source>` and enqueue each as `job_type`.

        `scheme`: "stripe" (`Stripe-Signature`), "standard-webhooks" (`webhook-id`,
        `webhook-timestamp`, `webhook-signature`), "github" (`X-Hub-Signature-256`) or
        "hmac-sha256" (`X-Signature: sha256=...`). The signed event id (body field
        `event_id_field`, or `webhook-id`) is the job's idempotency key, so a redelivered
        or replayed webhook runs once. `tolerance` [s]: how old a signed timestamp may be;
        `replay_window` [s]: how long a key is remembered (schemes without a timestamp).
        """
        config = WebhookSource(
            source, secret, job_type, scheme, event_id_field, tolerance, replay_window
        )
        self.registry.add_webhook(config)
        return config

    def middleware(self, fn: Middleware) -> Middleware:
        """Wrap every handler call (jobs and message batches) in `fn`, an async function
        `(call: HandlerCall, call_next) -> result` that returns `await call_next()` (or
        raises, which counts as the handler raising). The first added is the outermost.
        Usable as a decorator. Raises `InvalidHook` for anything else than an async
        function. See docs/hooks.md."""
        return self.registry.hooks.add_middleware(fn)

    def on(self, event: str) -> Callable[[Listener], Listener]:
        """Decorator: call the function with a `LifecycleEvent` after each `event`
        (`enqueued`, `started`, `succeeded`, `retried`, `failed`, `dead_lettered`,
        `cancelled`) of a job or message, once it is stored. Its errors are logged, never
        raised; an async function runs as its own task. Raises `InvalidHook` for an
        unknown event."""

        def register(fn: Listener) -> Listener:
            return self.registry.hooks.add_listener(event, fn)

        check_event(event)  # a typo fails here, not when the decorator is applied
        return register

    def use(self, *extensions: Extension) -> App:
        """Install extensions, e.g. the built-in job types:
        `app.use(contrib.email(), contrib.webhooks(allow_private=False))`. Returns the app.
        An extension registering a job type name already taken raises `InvalidJobConfig`."""
        for extension in extensions:
            extension.install(self)
        return self

    def wait_until(self, work: Any, *args: Any, durable: bool = False, **kwargs: Any) -> Any:
        """Run `work` (an awaitable, or a function and its arguments) in the background.

        Best effort: errors are logged, never raised here; a worker, a server and
        `close()` wait for pending work (up to `wait_until_limit` seconds). With
        `durable=True`, `work` must be a registered job handler and the call enqueues it
        as a job instead (returns the enqueue task inside a running loop, else the `Job`).
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
        job_type = self.registry.job_type_of_handler(fn)
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

    def use_wrangler(
        self,
        path: str,
        *,
        env: str | None = None,
        scheduled: CronHandler | None = None,
    ) -> WranglerConfig:
        """Declare the queues of a Cloudflare `wrangler.toml` / `wrangler.jsonc` (for
        environment `env`): every queue it names, with its consumer's settings
        (`max_batch_size`, `max_batch_timeout`, `max_retries`, `retry_delay`,
        `dead_letter_queue`, `max_concurrency`), and, given `scheduled`, one cron trigger
        per `triggers.crons` expression running it (its `ScheduledEvent.cron` says which,
        as Cloudflare's `event.cron`). Bind consumers by name afterwards:
        `@app.get_queue("emails").consumer`. Returns what was read, `unsupported` keys
        included; `WranglerConfigError` for a file that does not parse, is badly shaped
        (`queues.consumers[0].queue: required`), gives a queue two consumers or has no
        environment `env`, `InvalidQueueConfig` for a value out of range or a cron expression
        that does not parse, naming the file and each value's key path
        (`wrangler.toml: queues.consumers[0].max_batch_size: ...`), before anything is
        declared (`taskflare wrangler check` reports the same).
        """
        config = load_wrangler(path, env)
        problems = wrangler_problems(config)
        if problems:
            raise InvalidQueueConfig(f"{path}: " + f"; {path}: ".join(problems))
        pulled = [q.name for q in config.queues if q.consumer == "http_pull"]
        for name in pulled:  # refused before anything is declared
            if name in self.registry.queues:
                self.registry.check_pullable(name)
        for queue in config.queues:
            self.queue(queue.name, **queue.settings)
        for name in pulled:
            self.registry.set_pull_only(name)
        if scheduled is not None:
            base = getattr(scheduled, "__name__", "scheduled")
            for expression in config.crons:
                self.cron(expression, name=f"{base} {expression}")(scheduled)
        return config

    def get_queue(self, name: str) -> Queue:
        """The declared queue called `name`, or `UnknownQueue`."""
        self.registry.queue(name)
        return self._handle(name)

    async def stored_queue(self, name: str, *, create: bool = False) -> Queue:
        """A queue known to the database: declared in this app, or stored by the workers or
        server of the app that declared it (its stored settings then apply: size limits,
        dead-letter queue). `UnknownQueue` if neither, unless `create` (defaults apply)."""
        if name in self.registry.queues:
            return self._handle(name)
        try:
            settings = (await self.read.queue(name))["settings"] or {}
        except UnknownQueue:
            if not create:
                raise
            config = QueueConfig.create(name)
            backend = await self.backend()
            await backend.queue_declare_many(
                QueueDeclareParams([QueueSettings(name, config.to_json())])
            )
            settings = {}
        known = {k: v for k, v in settings.items() if k in QueueConfig.__dataclass_fields__}
        known.pop("name", None)
        spec = self.registry.declare_queue(QueueConfig.create(name, **known))
        kind = settings.get("kind")
        spec.stored_kind = kind if isinstance(kind, str) else None
        self._stored_only.add(name)
        return self._handle(name)

    async def delete_queue(self, name: str) -> int:
        """Delete a queue that is not declared in this app's code (one made by
        `stored_queue(create=True)`, e.g. over the Cloudflare-compatible API): every message
        of it and its stored settings. Returns how many messages went. `UnknownQueue` if the
        database does not know it; `InvalidQueueConfig` for a queue declared in code (its
        workers would declare it again)."""
        if name in self.registry.queues and name not in self._stored_only:
            raise InvalidQueueConfig(
                f"queue {name!r} is declared in the app's code; remove it there instead"
            )
        await self.stored_queue(name)  # UnknownQueue if the database does not know it
        backend = await self.backend()
        gone = await backend.queue_delete(QueueDeleteParams(name))
        self.registry.queues.pop(name, None)
        self._handles.pop(name, None)
        self._stored_only.discard(name)
        return gone

    @property
    def queues(self) -> dict[str, Queue]:
        """Every queue declared in this app (dead-letter queues included), by name."""
        return {name: self._handle(name) for name in self.registry.queues}

    @property
    def job_types(self) -> dict[str, JobType]:
        """Every registered job type, by name."""
        return dict(self.registry.job_types)

    @property
    def cron_triggers(self) -> dict[str, CronTrigger]:
        """Every cron trigger, by name."""
        return dict(self.registry.cron_triggers)

    @property
    def webhook_sources(self) -> dict[str, WebhookSource]:
        """Every webhook source, by name."""
        return dict(self.registry.webhook_sources)

    def job_type(self, name: str) -> JobType:
        """The registered job type `name`, or `UnknownJobType`."""
        return self.registry.job_type(name)

    # -- jobs -----------------------------------------------------------------------------

    prepare_job = _jobs(JobClient.prepare_job)
    enqueue = _jobs(JobClient.enqueue)
    enqueue_many = _jobs(JobClient.enqueue_many)
    get_job = _jobs(JobClient.get_job)
    list_jobs = _jobs(JobClient.list_jobs)
    wait_for_job = _jobs(JobClient.wait_for_job)
    cancel = _jobs(JobClient.cancel)
    retry = _jobs(JobClient.retry)

    async def get_batch(self, batch_id: str) -> JobBatch | None:
        """Counts and progress of a batch made by `enqueue_many`; None if unknown."""
        return await self.read.job_batch(batch_id)

    async def stats(self, queue: str | None = None, type: str | None = None) -> dict[str, Any]:
        """Job totals by status, `completionRate` and `failureRate` (the job service's
        shape: `{"total", "pending", ..., "completionRate": "92.00%", "byQueue", "byType"}`),
        optionally of one queue and/or type."""
        return await self.read.job_stats(queue, type)

    enqueue_sync = _sync_twin(enqueue)
    enqueue_many_sync = _sync_twin(enqueue_many)
    get_job_sync = _sync_twin(get_job)
    list_jobs_sync = _sync_twin(list_jobs)
    get_batch_sync = _sync_twin(get_batch)
    stats_sync = _sync_twin(stats)
    cancel_sync = _sync_twin(cancel)
    retry_sync = _sync_twin(retry)

    # -- documents --------------------------------------------------------------------------

    def namespace(self, name: str) -> Namespace:
        """The documents of namespace `name` (JSON by key, in this app's database):
        `put`, `put_many`, `insert`, `get`, `list`, `delete`, `count`. `InvalidDocument`
        for a bad name."""
        return Namespace(self, name)

    async def namespaces(self) -> list[NamespaceCount]:
        """Every namespace that holds documents, by name, with its count."""
        backend = await self.backend()
        return await backend.doc_namespaces()

    # -- storage ----------------------------------------------------------------------------

    async def backend(self) -> Backend:
        """The backend for this app's database, opened on first use (nothing is written)."""
        with self._lock:
            if self._backend is None:
                self._backend = open_backend(self.database_url, create=self.create_database)
            return self._backend

    def use_database(self, database_url: str | None) -> None:
        """Point this app at `database_url` (None: `$TASKFLARE_DATABASE_URL`, else the
        SQLite default) before it first uses a database, as a web framework's app factory
        does with its configuration. Raises `InvalidConfig` if the app is connected to
        another database (`close` it first)."""
        url = resolve_database_url(database_url)
        with self._lock:
            if self._backend is not None and url != self.database_url:
                raise InvalidConfig(
                    f"this app is connected to {redact_url(self.database_url)}; close it "
                    f"before pointing it at {redact_url(url)}"
                )
            self.database_url = url

    async def declare_queues(self) -> None:
        """Store every declared queue's settings, so admin tools show them (workers and the
        HTTP service do this when they start)."""
        backend = await self.backend()
        settings = [QueueSettings(s.name, s.settings_json()) for s in self.registry.queues.values()]
        await backend.queue_declare_many(QueueDeclareParams(settings))

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine to completion from synchronous code (the sync twins use this)."""
        return self._portal.run(coro)

    async def close(self) -> None:
        """Wait for this loop's pending `wait_until` work (up to `wait_until_limit`
        seconds; what is left is cancelled with a warning naming how many), then close
        database connections. The app can be used again afterwards."""
        await self.background.drain()
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    async def _close_backend(self) -> None:
        """Close the database connections only (the portal's exit hook: no draining)."""
        with self._lock:
            backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    def close_sync(self) -> None:
        """Blocking twin of `close`; also stops the private loop."""
        self.run_sync(self.close())
        self._portal.stop()
