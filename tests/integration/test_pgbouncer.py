"""taskflare behind a real PgBouncer (Debian's package) in transaction pooling mode.

Each test starts its own `pgbouncer` (pool_mode=transaction, two server connections, so
one client's statements keep changing server session) in front of the test database and
uses a throwaway schema. Real `taskflare worker` processes, a real `taskflare serve` and
a producer all go through the bouncer with `?pgbouncer=1`; one worker listens on a direct
connection (`listen_url=`), the other polls.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest

from conftest import PG_URL
from taskflare import App, BackendUnavailable
from taskflare.backends.base import QueueCountsParams

from .pgbouncer import PgBouncer
from .procs import TASKFLARE, WorkerProcess, complete_lines, wait_for

pytestmark = pytest.mark.xdist_group("pgbouncer")

APP_SOURCE = '''
"""PgBouncer test app: messages (one retry for "flaky"), jobs (one retry), a cron trigger."""
import json, os
from taskflare import App, Retry

app = App(os.environ["TF_URL"])
LOG_DIR = os.environ["TF_LOG_DIR"]


def log(kind, record):
    with open(os.path.join(LOG_DIR, f"{os.getpid()}.{kind}"), "a") as out:
        out.write(json.dumps(record) + "\\n")


work = app.queue("work", max_batch_size=10, max_batch_timeout=0, max_retries=3, retry_delay=0)


@work.consumer
async def consume(batch):
    for m in batch.messages:
        log("messages", [m.id, m.body["n"], m.attempts])
        if m.body.get("flaky") and m.attempts == 1:
            m.retry()
        else:
            m.ack()


@app.job("square", queue="jobs", max_attempts=3)
async def square(payload, ctx):
    log("jobs", [ctx.job_id, payload["n"], ctx.attempt])
    if payload.get("flaky") and ctx.attempt == 1:
        raise Retry(0)
    return payload["n"] ** 2


@app.job("limited", queue="limited", max_concurrency=2, rate_limit="50/s")
async def limited(payload, ctx):
    log("limited", [ctx.job_id, payload["n"], ctx.attempt])
    return payload["n"]


@app.cron("* * * * * *", name="tick")
def tick(event):
    log("ticks", event.scheduled_time.isoformat())
'''

MESSAGES = 300
JOBS = 60


def logged(folder: Path, kind: str) -> list[object]:
    """Every record of `kind` the workers wrote."""
    return [
        json.loads(line)
        for path in sorted((folder / "logs").glob(f"*.{kind}"))
        for line in complete_lines(path)
    ]


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    """A private PgBouncer in transaction pooling mode."""
    b = PgBouncer(pool_size=2)
    yield b
    b.stop()


@pytest.fixture
def schema() -> Iterator[str]:
    """A throwaway schema name, dropped (directly, not through the bouncer) afterwards."""
    name = f"tf_bouncer_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def direct_url() -> str:
    """The test server's URL (no bouncer), URL-encoded for `listen_url=`."""
    return quote(PG_URL.split("?", 1)[0], safe="")


def test_workers_producer_cron_and_http_api_work_through_transaction_pooling(
    bouncer: PgBouncer, schema: str, tmp_path: Path
) -> None:
    url = bouncer.url(schema, pgbouncer="1")
    listening_url = bouncer.url(schema, pgbouncer="1", listen_url=direct_url())
    (tmp_path / "bouncerapp.py").write_text(APP_SOURCE)
    (tmp_path / "logs").mkdir()
    spec = f"{tmp_path / 'bouncerapp.py'}:app"
    producer = App(url)
    workers: list[WorkerProcess] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        work = producer.queue("work")
        producer.job("square", queue="jobs", max_attempts=3)(lambda payload: None)  # declared
        producer.job("limited", queue="limited", max_concurrency=2, rate_limit="50/s")(
            lambda payload: None
        )
        for start in range(0, MESSAGES, 50):
            work.send_batch_sync(
                [{"body": {"n": n, "flaky": n % 10 == 0}} for n in range(start, start + 50)]
            )
        jobs = [
            (n, producer.run_sync(producer.enqueue("square", {"n": n, "flaky": n % 5 == 0})))
            for n in range(JOBS)
        ]
        # Flow-limited jobs are claimed in a transaction (lock, then claim), pipelined.
        limited = [(n, producer.run_sync(producer.enqueue("limited", {"n": n}))) for n in range(20)]
        workers = [
            WorkerProcess(spec, tmp_path, {"TF_URL": url}),
            WorkerProcess(spec, tmp_path, {"TF_URL": listening_url}),
        ]
        server_err = (tmp_path / "serve.err").open("wb")
        server = subprocess.Popen(
            [TASKFLARE, "serve", spec, "--port", "0"],
            env={**os.environ, "TF_URL": url, "TF_LOG_DIR": str(tmp_path / "logs")},
            stdout=subprocess.DEVNULL,
            stderr=server_err,
        )
        server_err.close()  # the child has its own descriptor
        serve_log = tmp_path / "serve.err"
        wait_for(lambda: "startup complete" in serve_log.read_text(), 60, "serve to start")
        found = re.search(r"on 127\.0\.0\.1:(\d+)", serve_log.read_text())
        assert found, serve_log.read_text()
        port = found.group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            assert client.get("/health").status_code == 200
            created = client.post("/jobs", json={"type": "square", "payload": {"n": 12}})
            assert created.status_code in (200, 201, 202), created.text
            http_job = created.json()["jobId"]
            wait_for(
                lambda: client.get(f"/jobs/{http_job}").json()["job"]["status"] == "completed",
                60,
                "the job enqueued over HTTP to complete",
            )
            assert client.get(f"/jobs/{http_job}").json()["job"]["result"] == 144
            sent = client.post("/queues/work/messages", json={"body": {"n": MESSAGES}})
            assert sent.status_code in (200, 201, 202), sent.text

        def finished() -> bool:
            acked = {r[1] for r in logged(tmp_path, "messages")}  # type: ignore[index]
            return len(acked) == MESSAGES + 1 and len(logged(tmp_path, "ticks")) >= 2

        wait_for(finished, 120, "every message delivered and two cron ticks")
        for n, job in jobs:
            assert job.wait_sync(timeout=60) == n**2
        for n, job in limited:
            assert job.wait_sync(timeout=60) == n
        assert Counter(r[1] for r in logged(tmp_path, "limited")) == dict.fromkeys(range(20), 1)  # type: ignore[index]
        wait_for(lambda: not producer_counts(producer), 60, "the queue to empty (all acked)")

        deliveries = Counter(
            (r[1], r[2])  # type: ignore[index]
            for r in logged(tmp_path, "messages")
        )
        expected = {(n, 1) for n in range(MESSAGES + 1)} | {(n, 2) for n in range(0, MESSAGES, 10)}
        assert set(deliveries) == expected, "every message once, flaky ones retried once"
        assert max(deliveries.values()) == 1, "nothing delivered twice"
        attempts = Counter((r[1], r[2]) for r in logged(tmp_path, "jobs"))  # type: ignore[index]
        wanted = {(n, 1) for n in [*range(JOBS), 12]} | {(n, 2) for n in range(0, JOBS, 5)}
        assert set(attempts) == wanted
        assert attempts[(12, 1)] == 2 and max(v for k, v in attempts.items() if k != (12, 1)) == 1
        ticks = Counter(logged(tmp_path, "ticks"))  # type: ignore[arg-type]
        assert max(ticks.values()) == 1, "each cron tick ran once"
        for worker in workers:
            assert worker.proc.poll() is None, worker.stderr
    finally:
        for worker in workers:
            worker.stop()
        if server is not None:
            server.terminate()
            server.wait(30)
        producer.close_sync()
    logs = [w.stderr_path.read_text() for w in workers]
    everything = "".join(logs) + (tmp_path / "serve.err").read_text() + bouncer.log_text()
    assert "prepared statement" not in everything
    assert "polling for new work instead of LISTEN" in logs[0]
    assert "polling" not in logs[1]


def producer_counts(app: App) -> dict[str, int]:
    """Messages of queue `work` by state, read through the bouncer."""

    async def read() -> dict[str, int]:
        rows = await (await app.backend()).queue_counts(QueueCountsParams("work"))
        return dict(rows[0].by_state) if rows else {}

    return app.run_sync(read())


def test_without_the_option_the_error_says_to_add_it(schema: str) -> None:
    """What breaks without `pgbouncer=1`: server-side prepared statements meet other
    clients' server sessions; the error names the fix. One server connection behind the
    bouncer makes the clash certain: the second client's first prepared statement gets
    the first client's statement name on the same server session (with two, the bouncer
    may keep each client on its own session and nothing clashes)."""
    bouncer = PgBouncer(pool_size=1)
    app = App(bouncer.url(schema))
    other = App(bouncer.url(schema))
    try:
        with pytest.raises(BackendUnavailable, match="add pgbouncer=1 to the database URL"):
            mine, theirs = app.queue("work"), other.queue("work")
            for n in range(50):
                mine.send_sync({"n": n})
                theirs.send_sync({"n": n})
    finally:
        app.close_sync()
        other.close_sync()
        bouncer.stop()


async def test_listen_url_wakes_waiters_and_polling_does_not_listen(
    bouncer: PgBouncer, schema: str
) -> None:
    """With `listen_url` a send through the bouncer wakes a waiter (NOTIFY reached the
    direct connection); without it the backend never LISTENs: waits end by timeout."""
    listening = App(bouncer.url(schema, pgbouncer="1", listen_url=direct_url()))
    polling = App(bouncer.url(schema, pgbouncer="1"))
    producer = App(bouncer.url(schema, pgbouncer="1"))
    try:
        queue = producer.queue("work")
        await queue.send({"n": 0})  # creates the schema
        heard = await listening.backend()
        seq = heard.change_seq("ready:work")
        waiting = heard.wait_for_change("ready:work", seq, 60)
        task = asyncio.ensure_future(waiting)
        await wait_until_listening(schema)
        await queue.send({"n": 1})
        assert await task, "the NOTIFY sent through the bouncer reached the direct LISTEN"

        deaf = await polling.backend()
        seq = deaf.change_seq("ready:work")
        await queue.send({"n": 2})
        assert not await deaf.wait_for_change("ready:work", seq, 0.5)
    finally:
        await listening.close()
        await polling.close()
        await producer.close()


async def test_enqueue_on_the_callers_connection_through_the_bouncer(
    bouncer: PgBouncer, schema: str
) -> None:
    """A caller's own psycopg connection through the bouncer keeps psycopg's default
    (prepare after 5 executions); taskflare's statements on it are never prepared."""
    app = App(bouncer.url(schema, pgbouncer="1"))
    other = App(bouncer.url(schema, pgbouncer="1"))
    dsn = bouncer.url(schema).split("?")[0]
    try:
        queue, theirs = app.queue("orders"), other.queue("orders")
        await theirs.send({"n": -1})  # creates the schema
        blocker = await psycopg.AsyncConnection.connect(
            dsn, autocommit=True, prepare_threshold=None
        )
        async with blocker, await psycopg.AsyncConnection.connect(dsn) as conn:
            for n in range(12):  # past psycopg's prepare_threshold (5)
                async with conn.transaction():
                    await queue.send({"n": n}, connection=conn)
                await theirs.send({"n": 100 + n})
                # Hold the server session `conn` just used every other round, so its next
                # transaction runs on the other one: statements prepared on one session
                # would be missing on the next.
                await blocker.execute("BEGIN" if n % 2 == 0 else "COMMIT")
                if n % 2 == 0:
                    await blocker.execute("SELECT 1")
            async with conn.transaction():
                await queue.send({"n": "rolled back"}, connection=conn)
                raise psycopg.Rollback()
        backend = await app.backend()
        rows = await backend.queue_counts(QueueCountsParams("orders"))
        assert sum(rows[0].by_state.values()) == 1 + 12 + 12
    finally:
        await app.close()
        await other.close()


async def listening_sessions(schema: str) -> int:
    """Server sessions whose last statement was LISTEN on the schema's channel."""
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query = %s",
            (f'LISTEN "taskflare_{schema}"',),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def wait_until_listening(schema: str) -> None:
    """Poll pg_stat_activity until the direct LISTEN session exists (deadline 30 s)."""
    deadline = time.monotonic() + 30
    while not await listening_sessions(schema):
        assert time.monotonic() < deadline, "no LISTEN session within 30 s"
        await asyncio.sleep(0.05)
