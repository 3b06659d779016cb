"""`taskflare worker health`: the probe a supervisor runs (Kubernetes exec probe, a
systemd timer, Docker HEALTHCHECK) to learn whether this machine's workers are alive."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from ..app import App
from ..errors import DatabaseNotFound, InvalidWorkerConfig, TaskflareError
from ..worker.health import DEFAULT_MAX_AGE, MIN_MAX_AGE, Verdict, check_max_age, worker_health
from .arguments import TextCommand
from .common import POOL_ERRORS, DatabaseOpt, Flags, existing_app, fail, run, said, state_app

health_cli = typer.Typer(
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None
)


@health_cli.command(cls=TextCommand)
def health(
    app: Annotated[
        str | None,
        typer.Argument(
            help="The worker's app ('module:attr'), for its database; or use --database-url."
        ),
    ] = None,
    max_age: Annotated[
        float,
        typer.Option(
            "--max-age",
            help=f"Fail when a worker's last heartbeat is older than this [s] "
            f"(at least {MIN_MAX_AGE:g}; workers report every {MIN_MAX_AGE / 2:g} s).",
        ),
    ] = DEFAULT_MAX_AGE,
    pid: Annotated[
        list[int] | None,
        typer.Option(
            "--pid", help="Check the worker with this process id (repeatable); default: all."
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Fail if the database has not answered [s].")
    ] = 10.0,
    database_url: DatabaseOpt = None,
) -> None:
    """Exit 0 if the workers on this machine sent a heartbeat within --max-age seconds,
    else 1; prints one line either way.

    Looks at the workers of this host name whose processes are running here (or the
    --pid ones), as stored in the app's database.

    Example: taskflare worker health myapp:app --max-age 60
    """
    try:
        check_max_age(max_age)
    except InvalidWorkerConfig as exc:
        raise fail(said(exc), 2) from None
    application: App = existing_app(app) if app else state_app(database_url)

    async def probe() -> Verdict:
        try:
            backend = await application.backend()
            return await asyncio.wait_for(
                worker_health(backend, max_age=max_age, pids=tuple(pid or ())), timeout
            )
        except TimeoutError:
            reason = f"the database did not answer within {timeout:g} s"
        except DatabaseNotFound as exc:
            reason = f"{said(exc)}; {Flags.no_database_hint}"
        except TaskflareError as exc:  # unreachable, not migrated
            reason = said(exc)
        if POOL_ERRORS.last:
            reason += f" (last connection error: {POOL_ERRORS.last})"
        return Verdict(False, f"unhealthy: cannot read the workers' heartbeats: {reason}")

    verdict = run(application, probe)
    typer.echo(verdict.line, err=not verdict.healthy)
    raise typer.Exit(0 if verdict.healthy else 1)


HEALTH_COMMAND = typer.main.get_command(health_cli)


class WorkerCommand(TextCommand):
    """`taskflare worker APP ...`, whose first word may instead be `health`: then the
    rest are the probe's arguments (an app spec always has a ':', so never `health`)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        if args and args[0] == "health":
            name = f"{info_name or 'worker'} health"
            return HEALTH_COMMAND.make_context(name, args[1:], parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)
