"""`taskflare jobs ...`: list, show, retry, cancel and enqueue jobs."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from ..app import App
from ..backends.base import NewMessage
from ..encoding import NotStrictJson, loads_strict
from ..errors import (
    AppCodeRequired,
    InvalidDelay,
    InvalidJobOption,
    JobNotFound,
    TaskflareError,
)
from ..ids import uuid7
from ..jobs import Job, JobStatus, check_max_attempts, check_priority
from ..limits import StoredFlow
from ..messages import check_delay
from ..readmodel import FILTER_SCAN_LIMIT
from ..tables import Column, error_line, fit_table, short_time
from .arguments import TextCommand
from .common import (
    DatabaseOpt,
    JsonOpt,
    cli,
    existing_app,
    fail,
    print_json,
    progress_bar,
    run,
    said,
    state_app,
)

jobs_cli = typer.Typer(
    help="List, show, retry, cancel and enqueue jobs. Example: taskflare jobs list --status failed",
    no_args_is_help=True,
)
cli.add_typer(jobs_cli, name="jobs")

IdArg = Annotated[str, typer.Argument(help="The job's id.")]
STATUS_COLOURS = {
    "pending": "cyan",
    "processing": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
}


@jobs_cli.command("list", cls=TextCommand)
def jobs_list(
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this status.")] = None,
    type: Annotated[str | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    queue: Annotated[str | None, typer.Option(help="Only jobs on this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue after this cursor.")] = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Jobs, newest first.

    Example: taskflare jobs list --status failed --type send-email --limit 20
    """
    app = state_app(database_url)
    page = run(
        app,
        lambda: app.read.jobs(status=status, type=type, queue=queue, limit=limit, cursor=cursor),
    )
    jobs = [j.to_dict() for j in page.jobs]
    if as_json:
        print_json(
            {
                "count": len(jobs),
                "jobs": jobs,
                "nextCursor": page.next_cursor,
                "scanLimitReached": page.partial,
            }
        )
        return
    columns = [
        Column("id", "id"),
        Column("type", "name"),
        Column("queue", "name", rank=4),
        Column("status", "word"),
        Column("tries", "number", rank=1),
        Column("created", "word", rank=5),
        Column("error", "text", rank=3),
    ]
    rows = [
        [
            job["id"],
            escape(job["type"]),
            escape(job["queue"]),
            f"[{STATUS_COLOURS.get(job['status'], 'white')}]{job['status']}[/]",
            f"{job['attempts']}/{job['maxAttempts']}",
            short_time(job["createdAt"]),
            escape(error_line(job["error"])),
        ]
        for job in jobs
    ]
    Console().print(fit_table("jobs (newest first)", columns, rows))
    if page.next_cursor and page.partial:
        typer.echo(
            f"searched the newest {FILTER_SCAN_LIMIT:,} jobs; continue: --cursor {page.next_cursor}"
        )
    elif page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}")


async def _get(app: App, job_id: str) -> Job:
    job = await app.read.job(job_id)
    if job is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    return job


@jobs_cli.command("show", cls=TextCommand)
def jobs_show(job_id: IdArg, database_url: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """A job's payload, result, progress, and every attempt's error and traceback.

    Example: taskflare jobs show 01a2b3c4-...
    """
    app = state_app(database_url)

    async def shown() -> dict[str, Any]:
        found = await _get(app, job_id)
        return found.to_dict() | await app.read.job_hold(found)

    job = run(app, shown)
    if as_json:
        print_json(job)
        return
    console = Console()
    colour = STATUS_COLOURS.get(job["status"], "white")
    console.print(
        f"[bold]{job['id']}[/]  {job['type']} on {job['queue']}  [{colour}]{job['status']}[/]"
    )
    for label, key in (
        ("attempts", "attempts"),
        ("max attempts", "maxAttempts"),
        ("priority", "priority"),
        ("created", "createdAt"),
        ("started", "startedAt"),
        ("completed", "completedAt"),
        ("run at", "runAt"),
        ("progress", "progress"),
        ("progress note", "progressNote"),
        ("correlation id", "correlationId"),
        ("idempotency key", "idempotencyKey"),
        ("error", "error"),
    ):
        if job[key] is not None:
            console.print(f"  {label}: {job[key]}")
    if job["snoozedUntil"]:
        console.print(f"  snoozed until: {job['snoozedUntil']}")
    for hold in job["heldBy"]:
        key = f" key {hold['key']!r}" if hold["key"] else ""
        until = hold["until"] or "one of its running jobs ends"
        console.print(f"  held by {hold['kind']} limit {hold['limit']}{key} until: {until}")
    console.print("  payload: " + json.dumps(job["payload"], indent=2).replace("\n", "\n  "))
    if job["result"] is not None:
        console.print("  result: " + json.dumps(job["result"], indent=2).replace("\n", "\n  "))
    for attempt in job["history"]:
        console.print(
            f"  attempt {attempt['attempt']} on {attempt['workerId']}: {attempt['outcome']}"
            f" ({attempt['startedAt']} → {attempt['finishedAt']})"
        )
        if attempt["error"]:
            console.print(f"    error: {attempt['error']}")
        if attempt["traceback"]:
            console.print("    " + attempt["traceback"].rstrip().replace("\n", "\n    "))


@jobs_cli.command("retry", cls=TextCommand)
def jobs_retry(job_id: IdArg, database_url: DatabaseOpt = None) -> None:
    """Put a failed or cancelled job back to pending with a fresh attempt budget.

    Example: taskflare jobs retry 01a2b3c4-...
    """
    app = state_app(database_url)
    run(app, lambda: app.retry(job_id))
    typer.echo(f"job {job_id} queued for retry")


@jobs_cli.command("wait", cls=TextCommand)
def jobs_wait(
    job_id: IdArg,
    timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait at most (0: for ever).")
    ] = 0,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Wait for a job to finish; print its result (exit 0), or its error (exit 1).

    Wakes as soon as the job's outcome is stored (from any worker, any machine).
    Exit 1 also when the timeout passes first.
    Example: taskflare jobs wait 01a2b3c4-... --timeout 60
    """
    app = state_app(database_url)
    job = run(app, lambda: app.read.job_when_finished(job_id, timeout or None))
    if as_json:
        print_json(job.to_dict())
    if job.status is JobStatus.COMPLETED:
        if not as_json:
            typer.echo(json.dumps(job.result))
        return
    if job.status.finished:
        raise fail(f"job {job_id} is {job.status.value}: {job.error}")
    raise fail(f"job {job_id} is still {job.status.value} after {timeout:g}s")


@jobs_cli.command("cancel", cls=TextCommand)
def jobs_cancel(job_id: IdArg, database_url: DatabaseOpt = None) -> None:
    """Cancel a pending job at once, or ask a running one to stop.

    Example: taskflare jobs cancel 01a2b3c4-...
    """
    app = state_app(database_url)
    job = run(app, lambda: app.cancel(job_id))
    done = job.status is JobStatus.CANCELLED
    typer.echo(f"job {job_id} {'cancelled' if done else 'cancellation requested'}")


def _parse_payload(text: str, where: str, code: int = 1) -> Any:
    """The JSON `text`, or exit `code` (2: a usage error; 1: a bad line of a file)."""
    try:
        return loads_strict(text, "payload")
    except NotStrictJson as exc:
        raise fail(f"{where}: {exc}", code) from None


@jobs_cli.command("enqueue", cls=TextCommand)
def jobs_enqueue(
    type: Annotated[str, typer.Argument(help="The job type.")],
    payload: Annotated[str | None, typer.Argument(help="The payload as JSON.")] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="A JSON Lines file: one payload a line.")
    ] = None,
    priority: Annotated[
        int | None, typer.Option(help="Higher runs first (default: the type's, or 0).")
    ] = None,
    delay: Annotated[float, typer.Option("--delay", help="Seconds before it may run.")] = 0,
    run_at: Annotated[
        str | None,
        typer.Option(
            "--run-at",
            help="When it may run: ISO 8601 with a UTC offset (2030-01-01T09:00Z, "
            "2030-01-01T09:00+02:00) or epoch seconds.",
        ),
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Enqueue once per key.")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts before it fails.")] = None,
    queue: Annotated[
        str | None, typer.Option(help="Queue (default: the type's, or default).")
    ] = None,
    app_spec: Annotated[
        str | None, typer.Option("--app", help="Validate payloads with this app's job types.")
    ] = None,
    rate_key: Annotated[
        str | None, typer.Option("--rate-key", help="The key of the type's keyed rate limits.")
    ] = None,
    concurrency_key: Annotated[
        str | None,
        typer.Option("--concurrency-key", help="The key of the type's keyed concurrency limits."),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Enqueue one job, or one per line of a JSON Lines file (batched, with progress).

    Without --app, the limits and uniqueness the app's workers stored with the queue
    settings apply; a job whose limit needs the app's code (a key function) is refused
    unless --rate-key/--concurrency-key give the key. --idempotency-key is for one job,
    not with --from-file.
    Example: taskflare jobs enqueue send-email '{"to": "a@b.c"}' --priority 5
    """
    if (payload is None) == (from_file is None):
        raise fail("give either PAYLOAD_JSON or --from-file FILE", 2)
    if from_file is not None and idempotency_key is not None:
        # One key names one job: every line under it would be one job (the first), which
        # is never what a file of jobs means; storing them all would ignore the key.
        raise fail(
            "--idempotency-key names one job; it cannot be given with --from-file (one job a line)",
            2,
        )
    app = existing_app(app_spec) if app_spec else state_app(database_url)
    try:
        options = _JobOptions(type, priority, delay, idempotency_key, max_attempts, queue)
        options.run_at = None if run_at is None else parse_run_at(run_at)
        options.validate = app_spec is not None
        options.rate_key, options.concurrency_key = rate_key, concurrency_key
    except TaskflareError as exc:
        raise fail(said(exc), 2) from None
    if not options.validate:
        app.jobs.stored_flow = _stored_flow(database_url)
        if queue is None:
            _refuse_an_undeclared_type(app.jobs.stored_flow, type)
    if from_file is not None:
        _enqueue_file(app, options, from_file)
        return
    assert payload is not None
    value = _parse_payload(payload, "PAYLOAD", 2)
    try:
        options.message(app, value)  # validate before connecting
    except TaskflareError as exc:  # an unknown type fails (1); a bad value is usage (2)
        failure = isinstance(exc, (LookupError, AppCodeRequired))  # not the options' fault
        raise fail(said(exc), 1 if failure else 2) from None

    async def work() -> tuple[str, bool]:
        job = await app.enqueue(
            type,
            value,
            priority=options.priority,
            max_attempts=options.max_attempts,
            delay_seconds=options.delay,
            run_at=options.run_at,
            idempotency_key=options.idempotency_key,
            queue=options.queue,
            strict=options.validate,
            rate_key=options.rate_key,
            concurrency_key=options.concurrency_key,
        )
        return job.id, job.duplicate

    job_id, duplicate = run(app, work)
    typer.echo(f"{job_id}{' (duplicate: already enqueued with this key)' if duplicate else ''}")


def _refuse_an_undeclared_type(flow: StoredFlow, type: str) -> None:
    """Without the app, a type that none of the stored declarations names is a typo (its
    job would wait in `default` for ever: no worker runs it), once the app's workers or
    server have stored any; `--queue` or `--app` enqueue it all the same."""
    declared = set(flow.type_queues) | set(flow.undeclared)
    if declared and type not in declared:
        raise fail(
            f"no job type {type!r} in the types the app's workers and server stored "
            f"({', '.join(sorted(declared))}); check the name, or give --app module:app, "
            "or --queue NAME to enqueue it there all the same",
            1,
        )


def _stored_flow(database_url: str | None) -> StoredFlow:
    """The limits the app's workers stored with the queue settings, read without creating
    a database (none yet: nothing stored, and the enqueue reads them again anyway)."""
    reader = state_app(database_url)

    async def read() -> StoredFlow:
        try:
            return await reader.jobs.load_stored_flow()
        finally:
            await reader.close()

    try:
        return asyncio.run(read())
    except TaskflareError:
        return StoredFlow()


def parse_run_at(text: str) -> datetime | float:
    """`--run-at`: ISO 8601 with a UTC offset (`Z` or `+02:00`), or epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidDelay(
            f"--run-at {text!r} is neither an ISO 8601 time (2030-01-01T09:00Z) nor epoch seconds"
        ) from None
    if when.utcoffset() is None:
        raise InvalidDelay(
            f"--run-at {text} has no UTC offset; add one, e.g. {when.isoformat()}Z for UTC "
            f"or {when.isoformat()}+02:00"
        )
    return when


class _JobOptions:
    """The options of `jobs enqueue`, validated once."""

    def __init__(
        self,
        type: str,
        priority: int | None,
        delay: float,
        idempotency_key: str | None,
        max_attempts: int | None,
        queue: str | None,
    ) -> None:
        self.type = type
        self.priority = None if priority is None else check_priority(priority)
        self.delay = check_delay(delay, "--delay")
        self.idempotency_key = idempotency_key
        self.max_attempts = None if max_attempts is None else check_max_attempts(max_attempts)
        self.queue = queue
        self.run_at: datetime | float | None = None
        self.validate = False  # with --app: the type must be one of the app's
        self.rate_key: str | None = None
        self.concurrency_key: str | None = None

    def message(self, app: App, payload: Any, batch_id: str | None = None) -> NewMessage:
        """Validate with the app's job type (unknown types refused with --app); else as
        given, with default options."""
        return app.prepare_job(
            self.type,
            payload,
            priority=self.priority,
            max_attempts=self.max_attempts,
            delay_seconds=self.delay,
            run_at=self.run_at,
            idempotency_key=self.idempotency_key,
            queue=self.queue,
            batch_id=batch_id,
            strict=self.validate,
            rate_key=self.rate_key,
            concurrency_key=self.concurrency_key,
        )


def _enqueue_file(app: App, options: _JobOptions, path: Path, chunk: int = 500) -> None:
    """Validate every line first (a bad line stops everything), then enqueue in chunks."""
    if not path.is_file():
        raise fail(f"no such file: {path}")
    batch_id = uuid7()
    messages: list[NewMessage] = []
    names: list[str] = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            names.append(f"{path}:{number}")
            payload = _parse_payload(line.decode("utf-8", "replace"), f"{path}:{number}")
            try:
                messages.append(options.message(app, payload, batch_id))
            except InvalidJobOption as exc:  # an option's fault, whatever the line: usage
                raise fail(said(exc), 2) from None
            except TaskflareError as exc:
                raise fail(f"{path}:{number}: {said(exc)}") from None
    if not messages:
        raise fail(f"{path}: no payloads found")
    started = time.monotonic()

    async def work() -> int:
        unique = app.jobs.unique_of(options.type)
        if unique is not None:  # one statement a job, as enqueue_many does
            stored = await app.jobs.store_unique(unique, messages, names)
            count = sum(1 for _, new in stored if new)
            await app.jobs.create_batch(batch_id, options.type, count)
            return count
        await app.jobs.create_batch(batch_id, options.type, len(messages))
        with progress_bar() as progress:
            bar = progress.add_task(f"enqueueing {options.type}", total=len(messages))
            for start in range(0, len(messages), chunk):
                part = messages[start : start + chunk]
                await app.jobs.store_chunk(part)
                progress.advance(bar, len(part))
        return len(messages)

    count = run(app, work)
    elapsed = time.monotonic() - started
    typer.echo(f"enqueued {count} jobs of {options.type!r} in {elapsed:.2f}s; batch {batch_id}")
