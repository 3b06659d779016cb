"""`taskflare queues ...`, `taskflare send` and `taskflare dlq ...`: look after queues."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..app import App
from ..backends.url import redact_url
from ..encoding import NotStrictJson, loads_strict, normalize_content_type
from ..errors import InvalidMessage, JobQueueSend, UnknownQueue
from ..messages import check_delay
from ..tables import Column, error_line, fit_table, short_time
from .arguments import TextCommand
from .common import (
    DatabaseOpt,
    JsonOpt,
    cli,
    fail,
    print_json,
    progress_bar,
    run,
    said,
    state_app,
)

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
    columns = [
        Column("queue", "id"),
        Column("ready", "number"),
        Column("leased", "number"),
        Column("failed", "number"),
        Column("oldest pending", "number", rank=2),
        Column("paused", "word", rank=1),
    ]
    if per_second is not None:
        columns.insert(5, Column("acks/s", "number", rank=1))
    rows = []
    for q in queues:
        age = q["oldestPendingAgeSeconds"]
        cells = [
            escape(q["name"]),
            *(
                f"{q['depth'].get(state, 0)}{'+' if state in q.get('depthCapped', ()) else ''}"
                for state in ("ready", "leased", "failed")
            ),
            "-" if age is None else f"{age:.1f}s",
            "[yellow]paused[/]" if q["paused"] else "no",
        ]
        if per_second is not None:
            cells.insert(5, f"{per_second.get(q['name'], 0.0):.1f}")
        rows.append(cells)
    return fit_table(title, columns, rows)


@queues_cli.command("list", cls=TextCommand)
def queues_list(database_url: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Every queue with its depth by state, oldest pending age and pause flag.

    Example: taskflare queues list --json
    """
    app = state_app(database_url)
    queues = run(app, app.read.queues)
    if as_json:
        print_json({"count": len(queues), "queues": queues})
    else:
        Console().print(queue_table(queues))


@queues_cli.command("info", cls=TextCommand)
def queues_info(name: QueueArg, database_url: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """One queue: depth by state, oldest pending age, pause flag, consumer settings.

    Example: taskflare queues info emails
    """
    app = state_app(database_url)
    queue = run(app, lambda: app.read.queue(name))
    if as_json:
        print_json(queue)
        return
    Console().print(queue_table([queue]))
    if queue["settings"]:
        for key, value in queue["settings"].items():
            typer.echo(f"  {key}: {value}")


@queues_cli.command("failed", cls=TextCommand)
def queues_failed(
    name: QueueArg,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages of a queue that used up their retries (kept as `failed`, oldest first),
    with their last error; copies of them wait in its dead-letter queue, if it has one.

    Example: taskflare queues failed emails --limit 20
    """
    app = state_app(database_url)

    async def work() -> list[dict[str, Any]]:
        await app.read.queue(name)  # UnknownQueue for a typo
        return await app.read.messages(name, "failed", limit)

    messages = run(app, work)
    if as_json:
        print_json({"queue": name, "count": len(messages), "messages": messages})
        return
    Console().print(message_table(f"failed messages of {name}", messages, "tries"))


def _set_paused(name: str, paused: bool, database_url: str | None) -> None:
    app = state_app(database_url)

    async def work() -> None:
        queue = await app.stored_queue(name)
        await (queue.pause() if paused else queue.resume())

    run(app, work)
    typer.echo(f"queue {name!r} {'paused' if paused else 'resumed'}")


@queues_cli.command("pause", cls=TextCommand)
def queues_pause(name: QueueArg, database_url: DatabaseOpt = None) -> None:
    """Stop deliveries from a queue (sends still succeed).

    Example: taskflare queues pause emails
    """
    _set_paused(name, True, database_url)


@queues_cli.command("resume", cls=TextCommand)
def queues_resume(name: QueueArg, database_url: DatabaseOpt = None) -> None:
    """Deliver from a paused queue again.

    Example: taskflare queues resume emails
    """
    _set_paused(name, False, database_url)


# Wrangler's names for the same commands (`wrangler queues pause-delivery <q>`).
queues_cli.command(
    "pause-delivery",
    cls=TextCommand,
    help="The same as `pause` (wrangler's name for it).\n\n"
    "Example: taskflare queues pause-delivery emails",
)(queues_pause)
queues_cli.command(
    "resume-delivery",
    cls=TextCommand,
    help="The same as `resume` (wrangler's name for it).\n\n"
    "Example: taskflare queues resume-delivery emails",
)(queues_resume)


@queues_cli.command("purge", cls=TextCommand)
def queues_purge(
    name: QueueArg,
    database_url: DatabaseOpt = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", "--force", help="Do not ask for confirmation (--force: wrangler's name)."
        ),
    ] = False,
) -> None:
    """Delete every message of a queue waiting for delivery, delayed ones included;
    messages and jobs in flight finish and are settled as usual.

    Example: taskflare queues purge emails --yes
    """
    app = state_app(database_url)
    queue = run(app, lambda: app.read.queue(name))
    depth = queue["depth"]
    ready = depth.get("ready", 0)
    more = "more than " if "ready" in set(queue.get("depthCapped", ())) else ""
    leased = depth.get("leased", 0)
    kept = f" ({leased} in flight are kept)" if leased else ""
    if not ready and not more:  # nothing to ask about (a script without a terminal either)
        typer.echo(f"nothing to purge: no message of queue {name!r} waits for delivery{kept}")
        return
    if not yes and not _confirmed(f"Delete {more}{ready} messages of queue {name!r}{kept}?"):
        raise fail(
            f"purge of queue {name!r} not confirmed: nothing was deleted "
            "(--yes skips the question, for scripts)"
        )
    app = state_app(database_url)

    async def work() -> int:
        return await (await app.stored_queue(name)).purge()

    purged = run(app, work)
    typer.echo(f"purged {purged} messages from {name!r}")


@cli.command(cls=TextCommand)
def send(
    queue: QueueArg,
    body: Annotated[str, typer.Argument(help="The body: JSON, or text with --content-type text.")],
    delay: Annotated[
        float | None,
        typer.Option(
            "--delay", help="Seconds before delivery (default: the queue's delivery_delay)."
        ),
    ] = None,
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
        if delay is not None:
            check_delay(delay, "--delay")
    except InvalidMessage as exc:
        raise fail(said(exc), 2) from None
    value: Any = body
    if content_type.lower() == "json":
        try:
            value = loads_strict(body, "body")
        except NotStrictJson as exc:
            if exc.path is not None:
                raise fail(f"BODY: {exc}", 2) from None
            raise fail(
                f"BODY is not valid JSON ({exc.detail}); use --content-type text for text", 2
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
        try:
            return await target.send(value, delay_seconds=delay, content_type=content_type)
        except JobQueueSend:
            raise  # the queue's kind, not the input's fault: the operation failed (1)
        except InvalidMessage as exc:
            # A body the queue cannot take (too large, nested too deep to encode) is bad
            # input like a body that is not JSON: a usage error (2), checked here because
            # the limits are the stored queue's.
            raise fail(said(exc), 2) from None

    message_id = run(app, work)
    typer.echo(message_id)


DlqArg = Annotated[str, typer.Argument(help="The queue whose dead letters to show.")]


@dlq_cli.command("list", cls=TextCommand)
def dlq_list(
    queue: DlqArg,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Messages waiting in a queue's dead-letter queue.

    Example: taskflare dlq list emails
    """
    app = state_app(database_url)

    async def work() -> tuple[str, list[dict[str, Any]]]:
        dlq = await _dlq_of(app, queue)
        return dlq, await app.read.messages(dlq, "ready", limit)

    dlq, messages = run(app, work)
    if as_json:
        print_json(
            {"queue": queue, "deadLetterQueue": dlq, "count": len(messages), "messages": messages}
        )
        return
    Console().print(message_table(f"dead letters of {queue} (in {dlq})", messages, "from"))


def message_table(title: str, messages: list[dict[str, Any]], origin: str) -> Table:
    """Stored messages as a terminal table: id, `origin` (where a dead letter came from)
    or attempts, when it was stored, its last error and the start of its body."""
    columns = [
        Column("id", "id"),
        Column(origin, "name" if origin == "from" else "number", rank=2),
        Column("created", "word", rank=4),
        Column("last error", "text", rank=1),
        Column("body", "text", rank=3),
    ]
    rows = [
        [
            m["id"],
            escape(m["originQueue"] or "-") if origin == "from" else str(m["attempts"]),
            short_time(m["createdAt"]),
            escape(error_line(m["lastError"])),
            escape(json.dumps(m["body"])[:120]),
        ]
        for m in messages
    ]
    return fit_table(title, columns, rows)


def _confirmed(question: str) -> bool:
    """Ask on the terminal; no answer (stdin closed, as in a script, or Ctrl-C) is a no."""
    try:
        return typer.confirm(question)
    except typer.Abort:
        return False


@dlq_cli.command("reprocess", cls=TextCommand)
def dlq_reprocess(
    queue: Annotated[str, typer.Argument(help="The queue whose dead letters to send back.")],
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

    async def work() -> int:
        dlq = await _dlq_of(app, queue)
        origin = await app.stored_queue(queue)
        unknown = await app.read.not_dead_letters(dlq, ids or (), queue)
        if unknown:  # all or nothing, as POST /queues/{name}/dlq/reprocess
            shown = ", ".join(unknown[:3]) + (
                f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
            )
            raise fail(
                f"not dead letters of {queue!r} (nothing was reprocessed): {shown}; "
                f"see taskflare dlq list {queue}",
                1,
            )
        if ids:
            chosen = list(dict.fromkeys(ids))
        else:
            chosen = [
                m["id"]
                for m in await app.read.messages(dlq, "ready", 10_000_000)
                if m["originQueue"] == queue  # a dead-letter queue may serve several queues
            ]
        done = 0
        with progress_bar(transient=True) as progress:
            bar = progress.add_task(f"reprocessing {dlq}", total=len(chosen))
            for start in range(0, len(chosen), chunk):
                part = chosen[start : start + chunk]
                done += await origin.replay_dead_letters(part)
                progress.advance(bar, len(part))
        return done

    count = run(app, work)
    typer.echo(f"reprocessed {count} messages from {queue!r}")


async def _dlq_of(app: App, queue: str) -> str:
    """The dead-letter queue of `queue`, or exit 1 saying it has none (as the HTTP API's
    404 `no_dlq`); naming a dead-letter queue itself points at the queue it serves."""
    dlq = await app.read.dead_letter_queue(queue)
    if dlq is None or dlq == queue:
        raise fail(await app.read.no_dead_letter_queue(queue), 1)
    return dlq
