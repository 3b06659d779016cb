"""What only the PostgreSQL backend does: transactional enqueue, schema option, migrations
under concurrency, NOTIFY wake-ups across processes, typed outage errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

from helpers import get, running_worker, state_counts, wait_until
from taskflare import App, MessageBatch, WorkerConfig
from taskflare.backends import open_backend
from taskflare.backends.base import (
    ClaimParams,
    EnqueueParams,
    MessageGetParams,
    NewMessage,
    QueueCountsParams,
    ready_topic,
)
from taskflare.backends.postgres import backend as pg_backend
from taskflare.backends.postgres.arrays import adapt_arrays
from taskflare.backends.sqlfile import Migration
from taskflare.errors import (
    BackendUnavailable,
    InvalidDatabaseUrl,
    InvalidMessage,
    SchemaOutdated,
    SchemaTooNew,
    StorageRejected,
)
from taskflare.ids import uuid7

TASKFLARE = str(Path(sys.executable).with_name("taskflare"))

# Every test here gets a fresh PostgreSQL schema (and is skipped, or fails under
# TASKFLARE_REQUIRE_POSTGRES=1, without a server).
on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def schema_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


def server_url(url: str) -> str:
    """The URL without taskflare's own options, for a plain psycopg connection."""
    return url.split("?", 1)[0]


def with_password(url: str, password: str) -> str:
    """The same URL with a password (the test server trusts local users, so it is ignored)."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


@on_postgres
async def test_send_with_connection_is_delivered_only_when_the_transaction_commits(
    app: App, database_url: str
) -> None:
    q = app.queue("orders", max_batch_timeout=0)
    async with await psycopg.AsyncConnection.connect(server_url(database_url)) as conn:
        await conn.execute("CREATE TEMP TABLE business (n int)")
        await conn.commit()
        async with conn.transaction():
            await conn.execute("INSERT INTO business VALUES (1)")
            committed = await q.send({"n": 1}, connection=conn)
            batch_ids = await q.send_batch([{"body": 2}, {"body": 3}], connection=conn)
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                await conn.execute("INSERT INTO business VALUES (2)")
                rolled_back = await q.send({"n": 2}, connection=conn)
                1 / 0  # noqa: B018 - the business code fails after enqueueing
    backend = await app.backend()
    assert await backend.message_get(MessageGetParams(rolled_back)) is None
    seen: list[object] = []

    @q.consumer
    async def handle(batch: MessageBatch[object]) -> None:
        seen.extend(m.body for m in batch.messages)

    async with running_worker(app):
        await wait_until(lambda: len(seen) >= 3, what="the committed messages")
    assert sorted(map(str, seen)) == sorted(map(str, [{"n": 1}, 2, 3]))
    assert await backend.message_get(MessageGetParams(committed)) is None  # acked, so deleted
    for message_id in batch_ids:
        assert await backend.message_get(MessageGetParams(message_id)) is None


@on_postgres
async def test_transactional_send_sees_nothing_before_commit(app: App, database_url: str) -> None:
    q = app.queue("orders")
    backend = await app.backend()
    async with await psycopg.AsyncConnection.connect(server_url(database_url)) as conn:
        message_id = await q.send("pending", connection=conn)  # opens a transaction
        assert await backend.message_get(MessageGetParams(message_id)) is None, (
            "invisible until commit"
        )
        await conn.commit()
    record = await backend.message_get(MessageGetParams(message_id))
    assert record is not None and record.state == "ready"


@on_postgres
def test_send_sync_with_a_plain_psycopg_connection_is_delivered_only_on_commit(
    database_url: str,
) -> None:
    app = App(database_url)
    q = app.queue("orders")
    try:
        with psycopg.connect(server_url(database_url)) as conn:
            with conn.transaction():
                kept = q.send_sync("kept", connection=conn)
                q.send_batch_sync([{"body": "kept too"}], connection=conn)
            with pytest.raises(ZeroDivisionError), conn.transaction():
                q.send_sync("dropped", connection=conn)
                1 / 0  # noqa: B018 - the business code fails after sending
        counts = app.run_sync(state_counts(app, "orders"))
        assert counts == {"ready": 2}
        assert app.run_sync(get(app, kept)) is not None
    finally:
        app.close_sync()


async def test_sqlite_refuses_connection_with_a_typed_error(sqlite_url: str) -> None:
    app = App(sqlite_url)
    try:
        with pytest.raises(InvalidMessage, match="PostgreSQL"):
            await app.queue("q").send("x", connection=object())
        assert await state_counts(app, "q") == {}
    finally:
        await app.close()


@on_postgres
async def test_schema_option_isolates_apps_sharing_a_database(database_url: str) -> None:
    other_url = database_url.replace(schema_of(database_url), schema_of(database_url) + "_b")
    first, second = App(database_url), App(other_url)
    try:
        await first.queue("shared").send("for the first app")
        assert await state_counts(first, "shared") == {"ready": 1}
        assert await state_counts(second, "shared") == {}
        async with await psycopg.AsyncConnection.connect(server_url(database_url)) as conn:
            cur = await conn.execute(
                "SELECT table_schema FROM information_schema.tables "
                "WHERE table_name = 'messages' AND table_schema = ANY(%s) ORDER BY 1",
                [[schema_of(database_url), schema_of(other_url)]],
            )
            assert [r[0] for r in await cur.fetchall()] == sorted(
                [schema_of(database_url), schema_of(other_url)]
            )
    finally:
        await first.close()
        await second.close()
        with psycopg.connect(server_url(database_url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema_of(other_url)}" CASCADE')


@on_postgres
@pytest.mark.parametrize("name", ["Upper", "has-dash", "a b", "x" * 64, "1starts_with_digit"])
def test_invalid_schema_name_is_refused(database_url: str, name: str) -> None:
    with pytest.raises(InvalidDatabaseUrl, match="schema="):
        open_backend(f"{server_url(database_url)}?schema={name}")


@on_postgres
def test_url_for_logs_hides_the_password(database_url: str) -> None:
    backend = open_backend(with_password(database_url, "s3cret-pw"))
    assert "s3cret-pw" not in backend.url_for_logs
    assert "schema=" in backend.url_for_logs


@on_postgres
def test_two_migrate_processes_at_once_are_safe(database_url: str) -> None:
    procs = [
        subprocess.Popen(
            [TASKFLARE, "migrate", database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    every = ", ".join(str(m.version) for m in pg_backend.MIGRATIONS)
    applied = [out for out, _ in outputs if f"applied migrations {every}" in out]
    assert len(applied) == 1, outputs
    assert sum("up to date" in out for out, _ in outputs) == 3, outputs
    with psycopg.connect(server_url(database_url)) as conn:
        rows = conn.execute(
            f'SELECT version FROM "{schema_of(database_url)}".schema_migrations'
        ).fetchall()
    assert rows == [(m.version,) for m in pg_backend.MIGRATIONS]


@on_postgres
async def test_outdated_schema_refuses_and_names_the_migrate_command(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = with_password(database_url, "s3cret-pw")
    old = App(url)
    await old.queue("q").send("made by the old version")
    await old.close()

    version = pg_backend.LATEST_VERSION + 1
    extra = Migration(version, "test_extra", "CREATE TABLE test_extra (x int);")
    monkeypatch.setattr(pg_backend, "MIGRATIONS", [*pg_backend.MIGRATIONS, extra])
    monkeypatch.setattr(pg_backend, "LATEST_VERSION", version)
    new = App(url)
    q = new.queue("q")
    try:
        with pytest.raises(SchemaOutdated) as caught:
            await q.send("refused")
        message = str(caught.value)
        assert "taskflare migrate postgresql://postgres:***@" in message
        assert f"schema={schema_of(database_url)}" in message
        assert "s3cret-pw" not in message
        backend = open_backend(url)
        assert await backend.migrate() == [version]
        assert await backend.migrate() == []
        await backend.close()
        await new.close()
        await q.send("accepted after migrate")
        assert await state_counts(new, "q") == {"ready": 2}
    finally:
        await new.close()


@on_postgres
async def test_schema_newer_than_the_code_is_refused(database_url: str) -> None:
    app = App(database_url)
    q = app.queue("q")
    await q.send("x")
    await app.close()
    with psycopg.connect(server_url(database_url)) as conn:
        conn.execute(
            f'INSERT INTO "{schema_of(database_url)}".schema_migrations VALUES (99, %s, 0)',
            ["from the future"],
        )
    try:
        with pytest.raises(SchemaTooNew, match="upgrade taskflare"):
            await q.send("y")
    finally:
        await app.close()


@on_postgres
async def test_notify_from_another_process_wakes_an_idle_waiter_quickly(
    app: App, database_url: str
) -> None:
    backend = await app.backend()
    topic = ready_topic("q")
    since = backend.change_seq(topic)
    await backend.wait_for_change(topic, since, 0.5)  # starts the LISTEN connection
    await wait_until(lambda: backend.change_seq(topic) != since, what="the listener to connect")
    since = backend.change_seq(topic)
    # The producer sends, then holds its connection open until told to exit on stdin, so
    # the wake can come only from the NOTIFY its committed send made, not from its leaving.
    producer = (
        "import sys\n"
        "from taskflare import App\n"
        "app = App(sys.argv[1])\n"
        "app.queue('q').send_sync('hello')\n"
        "print('sent', flush=True)\n"
        "sys.stdin.readline()\n"
        "app.close_sync()\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        producer,
        database_url,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        # The wait's timeout is the bound: a waiter not woken by the NOTIFY sleeps it out.
        woken = await backend.wait_for_change(topic, since, 60)
        still_connected = proc.returncode is None
    finally:
        out, _ = await proc.communicate(b"exit\n")
    assert out.decode().split() == ["sent"]
    assert woken and backend.change_seq(topic) != since, "woken by the NOTIFY, not by the timeout"
    assert still_connected, "woken while the producer was still connected"


@on_postgres
async def test_idle_worker_sends_about_one_query_a_second(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = app.queue("q")

    @q.consumer
    async def handle(batch: MessageBatch[object]) -> None:
        pass

    backend = await app.backend()
    statements = backend.statements_run  # type: ignore[attr-defined]
    assert isinstance(statements, int)
    async with running_worker(app, WorkerConfig(idle_wait=1.0)):
        # Let the start-up statements (declare, first rescue, report, statistics check)
        # pass: on a loaded machine they can take well over a second, so wait for the
        # first quiet 0.8 s (shorter than the 1 s idle poll) instead of a fixed time.
        seen = [backend.statements_run, time.monotonic()]  # type: ignore[attr-defined]

        def quiet() -> bool:
            now_run = backend.statements_run  # type: ignore[attr-defined]
            if now_run != seen[0]:
                seen[:] = [now_run, time.monotonic()]
            return time.monotonic() - seen[1] >= 0.8

        await wait_until(quiet, timeout=15, interval=0.05, what="the start-up statements")
        start = backend.statements_run  # type: ignore[attr-defined]
        t0 = time.monotonic()
        await wait_until(lambda: time.monotonic() - t0 >= 3.0, timeout=5, interval=0.1)
        ran = backend.statements_run - start  # type: ignore[attr-defined]
        per_second = ran / (time.monotonic() - t0)
    assert per_second <= 1.5, f"an idle worker ran {per_second:.1f} statements a second"


async def test_unreachable_server_raises_backend_unavailable_with_the_driver_error() -> None:
    backend = pg_backend.PostgresBackend(
        "postgresql://postgres:pw-not-shown@127.0.0.1:1/test?schema=x&connect_timeout=1",
        pool_timeout=1.0,
    )
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await backend.queue_counts(QueueCountsParams())
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        assert "pw-not-shown" not in str(caught.value)
        assert "127.0.0.1:1" in str(caught.value)
    finally:
        await backend.close()
        await backend.close()  # safe twice


@on_postgres
def test_sync_and_async_use_from_two_loops_then_close(database_url: str) -> None:
    app = App(database_url)
    q = app.queue("q")
    q.send_sync("from the portal loop")

    async def from_another_loop() -> dict[str, int]:
        await q.send("from asyncio.run's loop")
        return await state_counts(app, "q")

    assert asyncio.run(from_another_loop()) == {"ready": 2}
    assert q.send_batch_sync([{"body": 1}]) and app.run_sync(state_counts(app, "q")) == {"ready": 3}
    app.close_sync()
    app.close_sync()


@on_postgres
def test_env_override_for_pool_size_is_validated(database_url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl, match="pool_max_size"):
        open_backend(f"{database_url}&pool_max_size=zero")
    backend = open_backend(f"{database_url}&pool_max_size=3")
    assert "pool_max_size=3" in backend.url_for_logs


def test_libpq_options_with_spaces_reach_the_server() -> None:
    # `options=-c%20search_path%3D...` (what Django's OPTIONS become): the space must stay
    # a space; libpq does not read "+" as one.
    url = "postgresql://u@h/db?options=-c%20search_path%3Dshop&schema=shop"
    assert "options='-c search_path=shop'" in pg_backend.parse_postgres_url(url).conninfo


def test_url_without_a_host_uses_the_default_socket() -> None:
    conninfo = pg_backend.parse_postgres_url("postgresql:///shop?schema=shop").conninfo
    assert "dbname=shop" in conninfo and "host" not in conninfo


@on_postgres
@pytest.mark.parametrize("bouncer", [False, True])
async def test_statements_are_prepared_unless_behind_pgbouncer(
    database_url: str, bouncer: bool
) -> None:
    """The usual path is unchanged: statements prepared once a connection, planned per
    execution. With `pgbouncer=1` (here straight to the server) nothing is prepared and
    no session setting is made."""
    app = App(f"{database_url}&pgbouncer=1" if bouncer else database_url)
    try:
        queue = app.queue("q")
        for n in range(3):
            await queue.send({"n": n})
        backend = await app.backend()
        assert isinstance(backend, pg_backend.PostgresBackend)

        async def session(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> tuple[int, str]:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM pg_prepared_statements), "
                "current_setting('plan_cache_mode')",
                prepare=False,
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0]), str(row[1])  # type: ignore[call-overload]

        prepared, plan_mode = await backend._db.run(session, "read the session")
        if bouncer:
            assert (prepared, plan_mode) == (0, "auto")
        else:
            assert prepared > 0 and plan_mode == "force_custom_plan"
    finally:
        await app.close()


@on_postgres
@pytest.mark.parametrize("statement", ["message_enqueue_uniform", "message_enqueue_many"])
async def test_a_batch_stored_to_be_flushed_later_commits_without_waiting_for_the_disk(
    app: App, database_url: str, statement: str
) -> None:
    """`EnqueueParams(durable=False)` (every enqueue_many chunk but the last) turns
    synchronous_commit off for its own transaction only; a durable store leaves it as
    the server is configured."""
    app.queue("q")
    await app.get_queue("q").send(1)  # the schema exists
    backend = await app.backend()
    new = [NewMessage(uuid7(), "q", b"1", "json"), NewMessage(uuid7(), "q", b"2", "json")]
    make = (
        pg_backend._uniform_args
        if statement == "message_enqueue_uniform"
        else lambda m, f: pg_backend._enqueue_many_args(m, f)[1]
    )
    sql = backend._db.sql[statement]  # type: ignore[attr-defined]
    with psycopg.connect(database_url.split("?")[0], autocommit=True) as conn:
        for flush_later, setting in ((True, "off"), (False, "on")):
            conn.execute("BEGIN")
            args = adapt_arrays({**make(new, flush_later), "channel": "test"})
            conn.execute(sql, args)
            assert conn.execute("SHOW synchronous_commit").fetchone() == (setting,)
            conn.execute("ROLLBACK")
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    await backend.message_enqueue_many(EnqueueParams(new, durable=False))
    assert [m.id for m in await app.get_queue("q").list_messages()][1:] == [m.id for m in new]


@on_postgres
@pytest.mark.parametrize("bouncer", [False, True])
async def test_expected_claim_runs_on_a_generic_plan_without_changing_the_session(
    database_url: str, bouncer: bool
) -> None:
    """The claim of a woken worker (`describe_empty=False`) is planned once a connection
    (a generic plan), on the claim connection, whose session carries the claim's settings
    (`claim_session`): the pooled sessions keep `force_custom_plan` (and sequential scans)
    for every other statement and never run it, after a claim and after a claim that
    failed. Behind PgBouncer there is no claim connection, nothing is prepared and the
    claim is sent as before."""
    base = f"{database_url}&pool_max_size=1"  # one pooled connection: the one we read
    app = App(f"{base}&pgbouncer=1" if bouncer else base)
    try:
        queue = app.queue("q")
        for n in range(3):
            await queue.send({"n": n})
        backend = await app.backend()
        assert isinstance(backend, pg_backend.PostgresBackend)

        def params(queue: str, limit: int) -> ClaimParams:
            return ClaimParams(queue, limit, uuid7(), "w", 30.0, describe_empty=False)

        async def session(
            conn: psycopg.AsyncConnection[tuple[object, ...]],
        ) -> tuple[str, str, int, int]:
            cur = await conn.execute(
                "SELECT current_setting('plan_cache_mode') || ' ' "
                "|| current_setting('enable_seqscan'), "
                "(SELECT state FROM pg_stat_activity WHERE pid = pg_backend_pid()), "
                "coalesce(sum(generic_plans) FILTER (WHERE statement LIKE %(claim)s), 0), "
                "coalesce(sum(custom_plans) FILTER (WHERE statement LIKE %(claim)s), 0) "
                "FROM pg_prepared_statements WHERE statement NOT LIKE '%%UNION ALL%%'",
                # message_claim_expected (message_claim_many also describes the queue)
                {"claim": "%candidates AS MATERIALIZED%"},
                prepare=False,
            )
            row = await cur.fetchone()
            assert row is not None
            return str(row[0]), str(row[1]), int(row[2]), int(row[3])  # type: ignore[call-overload]

        first = await backend.message_claim_many(params("q", 2))
        assert len(first.messages) == 2 and first.ready is None
        with pytest.raises(StorageRejected):  # refused by the driver inside the transaction
            await backend.message_claim_many(params("q\x00", 1))
        second = await backend.message_claim_many(params("q", 5))
        assert len(second.messages) == 1
        assert not {m.id for m in first.messages} & {m.id for m in second.messages}
        assert (await backend.message_claim_many(params("q", 5))).messages == []
        plan_mode, state, generic, custom = await backend._db.run(session, "read the session")
        claim_conn = backend._db._resources().claim_conn
        if bouncer:
            assert (plan_mode, generic, custom) == ("auto on", 0, 0)
            assert claim_conn is None
        else:
            assert (plan_mode, generic, custom) == ("force_custom_plan on", 0, 0)
            assert claim_conn is not None
            plan_mode, state, generic, custom = await session(claim_conn)
            assert plan_mode == "force_generic_plan off"
            assert generic >= 1 and custom == 0
        assert state == "active"  # this very statement: no transaction was left open
    finally:
        await app.close()
