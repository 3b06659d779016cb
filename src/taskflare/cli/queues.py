"""`taskflare queues ...`, `taskflare send` and `taskflare dlq ...`: look after queues."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..backends.url import redact_url
from ..encoding import normalize_content_type
from ..errors import InvalidMessage, UnknownQueue
from ..messages import check_delay
from .common import DatabaseOpt, JsonOpt, cli, fail, print_json, run, state_app

queues_cli = typer.Typer(
    help="List, inspect, pause, resume and purge queues. Example: taskflare queues list",
    no_args_is_help=True,
)
dlq_cli = typer.Typer(
    help="Dead-letter queues. Example: taskflare dlq list emails", no_args_is_help=True
)
cli.add_typer(queues_cli, name="queues")
cli.add_typer(dlq_cli, name="dlq")

QueueArg = Annotated[str, typer.Argument(help="Queue name.")]


def queue_table(
    queues: list[dict[str, Any]],
    title: str = "queues",
    per_second: dict[str, float] | None = None,
) -> Table:
    """Queues as a terminal table (with an acks/s column when rates are given)."""
    table = Table(title=title)
    columns = ["queue", "ready", "leased", "failed", "oldest pending", "paused"]
    if per_second is not None:
        columns.insert(5, "acks/s")
    for column in columns:
        table.add_column(column, justify="left" if column == "queue" else "right")
    for q in queues:
        age = q["oldestPendingAgeSeconds"]
        cells = [
            q["name"],
            *(str(q["depth"].get(state, 0)) for state in ("ready", "leased", "failed")),
            "-" if age is None else f"{age:.1f}s",
            "[yellow]paused[/]" if q["paused"] else "no",
        ]
        if per_second is not None:
            cells.insert(5, f"{per_second.get(q['name'], 0.0):.1f}")
        table.add_row(*cells)
    return table


@queues_cli.command("list")
def queues_list(database_url: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Every queue with its depth by state, oldest pending age and pause flag.

    Example: taskflare queues list --json
    """
    app = state_app(database_url, reading=True)
    queues = run(app, app.read.queues)
    if as_json:
        print_json({"count": len(queues), "queues": queues})
    else:
        Console().print(queue_table(queues))


@queues_cli.command("info")
def queues_info(name: QueueArg, database_url: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """One queue: depth by state, oldest pending age, pause flag, consumer settings.

    Example: taskflare queues info emails
    """
    app = state_app(database_url, reading=True)
    queue = run(app, lambda: app.read.queue(name))
    if as_json:
        print_json(queue)
        return
    Console().print(queue_table([queue]))
    if queue["settings"]:
        for key, value in queue["settings"].items():
            typer.echo(f"  {key}: {value}")


def _set_paused(name: str, paused: bool, database_url: str | None) -> None:
    app = state_app(database_url)

    async def work() -> None:
        queue = await app.stored_queue(name)
        await (queue.pause() if paused else queue.resume())

    run(app, work)
    typer.echo(f"queue {name!r} {'paused' if paused else 'resumed'}")


@queues_cli.command("pause")
def queues_pause(name: QueueArg, database_url: DatabaseOpt = None) -> None:
    """Stop deliveries from a queue (sends still succeed).

    Example: taskflare queues pause emails
    """
    _set_paused(name, True, database_url)


@queues_cli.command("resume")
def queues_resume(name: QueueArg, database_url: DatabaseOpt = None) -> None:
    """Deliver from a paused queue again.

    Example: taskflare queues resume emails
    """
    _set_paused(name, False, database_url)


@queues_cli.command("purge")
def queues_purge(
    name: QueueArg,
    database_url: DatabaseOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every undelivered message of a queue, delayed ones included.

    Example: taskflare queues purge emails --yes
    """
    app = state_app(database_url)
    depth = run(app, lambda: app.read.queue(name))["depth"]
    pending = depth.get("ready", 0) + depth.get("leased", 0)
    if not yes:
        typer.confirm(f"Delete {pending} messages of queue {name!r}?", abort=True)
    app = state_app(database_url)

    async def work() -> int:
        return await (await app.stored_queue(name)).purge()

    purged = run(app, work)
    typer.echo(f"purged {purged} messages from {name!r}")


@cli.command()
def send(
    queue: QueueArg,
    body: Annotated[str, typer.Argument(help="The body: JSON, or text with --content-type text.")],
    delay: Annotated[float, typer.Option("--delay", help="Seconds before delivery.")] = 0,
    content_type: Annotated[
        str, typer.Option("--content-type", help="json (default), text or bytes.")
    ] = "json",
    create: Annotated[
        bool,
        typer.Option("--create", help="Send even if no app declared the queue (it is created)."),
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Send one message to a queue (one a worker or server of your app has declared).

    Example: taskflare send emails '{"to": "a@b.c"}' --delay 30
    """
    try:
        normalize_content_type(content_type, allow_pickle=False, queue=queue)
        check_delay(delay, "--delay")
    except InvalidMessage as exc:
        raise fail(str(exc), 2) from None
    value: Any = body
    if content_type.lower() == "json":
        try:
            value = json.loads(body)
        except json.JSONDecodeError as exc:
            raise fail(
                f"BODY is not valid JSON ({exc}); use --content-type text for text", 2
            ) from None
    elif content_type.lower() == "bytes":
        value = body.encode()
    app = state_app(database_url)

    async def work() -> str:
        try:
            target = await app.stored_queue(queue, create=create)
        except UnknownQueue:
            raise fail(
                f"no queue named {queue!r} in {redact_url(app.database_url)}: no worker or "
                "server of an app declaring it has run; check the name, or pass --create",
                1,
            ) from None
        return await target.send(value, delay_seconds=delay, content_type=content_type)

    try:
        message_id = run(app, work)
    except InvalidMessage as exc:
        raise fail(str(exc), 2) from None
    typer.echo(message_id)


DlqArg = Annotated[
    str, typer.Argument(help="The queue whose dead letters to show (or the DLQ itself).")
]


@dlq_cli.command("list")
def dlq_list(
    queue: DlqArg,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages waiting in a queue's dead-letter queue.

    Example: taskflare dlq list emails
    """
    app = state_app(database_url, reading=True)

    async def work() -> tuple[str, list[dict[str, Any]]]:
        dlq = await app.read.dead_letter_queue(queue)
        if dlq is None:
            raise fail(f"queue {queue!r} has no dead_letter_queue", 1)
        return dlq, await app.read.messages(dlq, "ready", limit)

    dlq, messages = run(app, work)
    if as_json:
        print_json(
            {"queue": queue, "deadLetterQueue": dlq, "count": len(messages), "messages": messages}
        )
        return
    table = Table(title=f"dead letters of {queue} (in {dlq})")
    for column in ("id", "from", "created", "body"):
        table.add_column(column, no_wrap=column == "id", min_width=36 if column == "id" else None)
    for m in messages:
        body = json.dumps(m["body"])
        table.add_row(m["id"], m["originQueue"] or "-", m["createdAt"], body[:60])
    Console().print(table)


@dlq_cli.command("reprocess")
def dlq_reprocess(
    queue: DlqArg,
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Only this message (repeatable).")
    ] = None,
    database_url: DatabaseOpt = None,
    chunk: Annotated[int, typer.Option(min=1, max=10_000, help="Messages per transaction.")] = 500,
) -> None:
    """Send dead letters back to their original queue with a fresh attempt budget.

    Example: taskflare dlq reprocess emails --id 01a2...
    """
    app = state_app(database_url)

    async def work() -> tuple[int, int]:
        dlq = await app.read.dead_letter_queue(queue)
        if dlq is None:
            raise fail(f"queue {queue!r} has no dead_letter_queue", 1)
        origin = await app.stored_queue(queue)
        waiting = [m["id"] for m in await app.read.messages(dlq, "ready", 10_000_000)]
        chosen = waiting if not ids else [i for i in ids if i in set(waiting)]
        done = 0
        with Progress(transient=True) as progress:
            bar = progress.add_task(f"reprocessing {dlq}", total=len(chosen))
            for start in range(0, len(chosen), chunk):
                part = chosen[start : start + chunk]
                done += await origin.replay_dead_letters(part)
                progress.advance(bar, len(part))
        return done, len(ids or []) - len(chosen) if ids else 0

    count, unknown = run(app, work)
    if unknown:
        raise fail(
            f"reprocessed {count} messages from {queue!r}; {unknown} of the ids given are not "
            "dead letters of it",
            1,
        )
    typer.echo(f"reprocessed {count} messages from {queue!r}")
