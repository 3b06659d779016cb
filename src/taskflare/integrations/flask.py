"""The Flask extension: `taskflare = TaskFlare()` at import time, handlers declared on
`taskflare.app`, `taskflare.init_app(flask_app)` in the app factory.

The database is the Flask config's `TASKFLARE_DATABASE_URL` (else
`$TASKFLARE_DATABASE_URL`, else `sqlite:///taskflare.db`); `enqueue`, `enqueue_many`,
`send` and `send_batch` join a SQLAlchemy session's transaction when given `session=`; the
Flask command line gains `flask taskflare ...` (the `taskflare` command line on this app).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click
from flask import Flask
from flask.cli import ScriptInfo, pass_script_info

from ..app import App
from ..backends.url import DATABASE_URL_ENV
from ..cli import main
from ..errors import InvalidConfig
from ..jobs import Job
from .commandline import with_app
from .sqlalchemy import psycopg_connection

CONFIG_KEY = "TASKFLARE_DATABASE_URL"
EXTENSION = "taskflare"
BOOT = "taskflare.integrations.flask_boot:app"


class TaskFlare:
    """A taskflare `App` (`.app`) configured from a Flask app's config.

    One taskflare app serves the process, as one Celery app does: `init_app` on a second
    Flask app with another database URL needs the first one's connections closed
    (`taskflare.app.close_sync()`, e.g. between tests), else `InvalidConfig`."""

    def __init__(self, flask_app: Flask | None = None, *, app: App | None = None) -> None:
        self.app = app if app is not None else App()
        if flask_app is not None:
            self.init_app(flask_app)

    def init_app(self, flask_app: Flask) -> None:
        """Use `flask_app.config["TASKFLARE_DATABASE_URL"]` (when set), register the
        extension as `flask_app.extensions["taskflare"]` and add `flask taskflare`."""
        url = flask_app.config.get(CONFIG_KEY)
        if url is not None and not isinstance(url, str):
            raise InvalidConfig(f"{CONFIG_KEY} must be a string, got {type(url).__name__}")
        if url:
            self.app.use_database(url)
        flask_app.extensions[EXTENSION] = self
        flask_app.cli.add_command(taskflare_command)

    def enqueue(
        self, type: str, payload: Any = None, *, session: Any = None, **options: Any
    ) -> Job:
        """`App.enqueue_sync`; with `session` (SQLAlchemy, psycopg 3) the job is written
        in the session's transaction and exists only if it commits."""
        return self.app.enqueue_sync(type, payload, connection=_driver(session), **options)

    def enqueue_many(
        self, type: str, payloads: Iterable[Any], *, session: Any = None, **options: Any
    ) -> str:
        """`App.enqueue_many_sync`; with `session`, every job of the batch is written in the
        session's transaction and exists only if it commits."""
        return self.app.enqueue_many_sync(type, payloads, connection=_driver(session), **options)

    def send(self, queue: str, body: Any, *, session: Any = None, **options: Any) -> str:
        """`Queue.send_sync` to `queue`, in `session`'s transaction when given."""
        handle = self.app.get_queue(queue)
        return handle.send_sync(body, connection=_driver(session), **options)

    def send_batch(
        self,
        queue: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        session: Any = None,
        **options: Any,
    ) -> list[str]:
        """`Queue.send_batch_sync` to `queue`, in `session`'s transaction when given."""
        handle = self.app.get_queue(queue)
        return handle.send_batch_sync(messages, connection=_driver(session), **options)


def _driver(session: Any) -> Any:
    return None if session is None else psycopg_connection(session)


@click.command(
    "taskflare",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_script_info
def taskflare_command(info: ScriptInfo, args: tuple[str, ...]) -> None:
    """Run a taskflare command (worker, serve, jobs, queues, ...) on this Flask app."""
    extension = info.load_app().extensions[EXTENSION]
    os.environ[DATABASE_URL_ENV] = extension.app.database_url  # and to worker subprocesses
    if info.app_import_path:  # how flask_boot (and --processes children) find the app
        os.environ["FLASK_APP"] = info.app_import_path
    main(with_app(list(args), BOOT), prog_name="flask taskflare")
