"""A SQLite file deleted or replaced under a running `taskflare serve`: writes and reads
answer 503 `database_unavailable`, never 200 for a job stored in a file nobody else sees.

SQLite only: a PostgreSQL server cannot have its database swapped under an open
connection without the connection failing (`test_http_health.py` covers that outage).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from taskflare import App

from .server import poll
from .test_http_serve import TASKFLARE, env, free_port

APP = """\
from taskflare import App
app = App({url!r})

@app.job("note")
async def note(payload):
    return payload
"""


def another_database(path: Path) -> None:
    """A taskflare database of its own at `path`, holding one job (a restored backup)."""

    async def make() -> None:
        other = App(f"sqlite:///{path}")

        @other.job("note")
        async def note(payload: object) -> object:
            return payload

        await other.enqueue("note", {"from": "the other file"})
        await other.close()

    asyncio.run(make())


def assert_unavailable(response: httpx.Response, db: Path) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "success": False,
        "error": "the database is unavailable",
        "code": "database_unavailable",
    }
    assert db.name not in response.text


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_post_jobs_is_503_once_the_sqlite_file_is_deleted_or_replaced(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "data" / "taskflare.db"
    (tmp_path / "gone_app.py").write_text(APP.format(url=f"sqlite:///{db}"))
    port = free_port()
    err_path = tmp_path / "serve.err"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [TASKFLARE, "serve", f"{tmp_path / 'gone_app.py'}:app", "--port", str(port)],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=tmp_path,
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

                def healthy() -> bool:
                    try:
                        return client.get("/health").status_code == 200
                    except httpx.TransportError:
                        return False

                poll(healthy, timeout=30, what="the server to answer")
                before = client.post("/jobs", json={"type": "note", "payload": {"n": 1}})
                assert before.status_code == 200, before.text
                job_id = before.json()["jobId"]

                if how == "deleted":
                    db.unlink()  # `rm taskflare.db`: its -wal and -shm files stay
                else:
                    another_database(tmp_path / "other.db")
                    os.replace(tmp_path / "other.db", db)  # `mv other.db taskflare.db`

                after = client.post("/jobs", json={"type": "note", "payload": {"n": 2}})
                assert_unavailable(after, db)  # no jobId: nothing is reported as stored
                assert_unavailable(client.get(f"/jobs/{job_id}"), db)
                assert_unavailable(client.get("/jobs"), db)
                assert_unavailable(
                    client.post("/jobs", json={"type": "note", "payload": {"n": 3}}), db
                )
                assert client.get("/health").status_code == 503
        finally:
            proc.terminate()
            proc.wait(15)
    log = err_path.read_text()
    said = "deleted" if how == "deleted" else "replaced by another file"
    assert log.count(f"the database file was {said} while this process had it open") == 1, log
