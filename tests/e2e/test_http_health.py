"""`GET /health` reports the database (503 while it is away); `GET /health/live` never
touches it. Against a real `taskflare serve` whose database really goes away."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.pg_server import PrivatePostgres

from .server import poll
from .test_http_serve import TASKFLARE, env, free_port

APP = "from taskflare import App\napp = App({url!r})\napp.queue('work')\n"


class Served:
    """`taskflare serve` on a free port, its stderr in a file."""

    def __init__(self, folder: Path, url: str) -> None:
        (folder / "health_app.py").write_text(APP.format(url=url))
        self.port = free_port()
        self.err_path = folder / "serve.err"
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            [TASKFLARE, "serve", f"{folder / 'health_app.py'}:app", "--port", str(self.port)],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            cwd=folder,
        )

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def answers(self, path: str, status: int) -> httpx.Response | None:
        try:
            response = self.get(path)
        except httpx.TransportError:
            return None
        return response if response.status_code == status else None

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)
        self._err.close()
        return self.err_path.read_text()


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


def assert_up(served: Served) -> None:
    response = poll(lambda: served.answers("/health", 200), timeout=30, what="a healthy /health")
    body = response.json()
    assert (body["status"], body["database"], body["service"]) == ("ok", "ok", "queue")
    assert body["timestamp"].endswith("Z")


def assert_down(served: Served, secrets: tuple[str, ...]) -> None:
    response = poll(lambda: served.answers("/health", 503), timeout=30, what="/health 503")
    body: dict[str, Any] = response.json()
    assert (body["status"], body["database"]) == ("unavailable", "unavailable")
    assert response.headers["content-type"] == "application/json"
    for secret in secrets:
        assert secret not in response.text
    live = served.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "ok"


def test_health_is_503_while_postgres_is_stopped_and_live_stays_200(
    tmp_path: Path, private_pg: PrivatePostgres
) -> None:
    served = Served(tmp_path, f"{private_pg.url}?schema=tf_health")
    try:
        assert_up(served)
        private_pg.stop()
        assert_down(served, ("127.0.0.1:", str(private_pg.port), "tf_health", "postgres"))
        private_pg.start()
        assert_up(served)
    finally:
        log = served.stop()
    assert log.count("health: the database is unavailable") == 1, log


def test_health_is_503_once_the_sqlite_file_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "data" / "tf.db"
    served = Served(tmp_path, f"sqlite:///{db}")
    try:
        assert_up(served)
        for path in db.parent.iterdir():  # the database, its WAL and shared memory
            path.unlink()
        assert_down(served, (str(db), "tf.db"))
    finally:
        served.stop()
