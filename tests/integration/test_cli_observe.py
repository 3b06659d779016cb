"""`taskflare stats [--watch]` and `taskflare tail` as real processes, on both backends."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskflare import App
from taskflare.backends.base import EnqueueParams, NewMessage
from taskflare.ids import uuid7
from taskflare.web import Tokens, create_api

from .cli_run import (
    Follower,
    declared_app,
    ok,
    send_in_process,
    tf_json,
    tf_many,
    write_cli_app,
)
from .procs import TASKFLARE, wait_for


def _http_documents(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """GET /stats and GET /queues/work from the HTTP API on the same database."""
    app = declared_app(url)

    async def fetch() -> tuple[dict[str, Any], dict[str, Any]]:
        transport = httpx.ASGITransport(app=create_api(app, Tokens(None, None)))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            stats = (await client.get("/stats")).json()
            queue = (await client.get("/queues/work")).json()
        await app.close()
        return stats, queue

    return asyncio.run(fetch())


def test_stats_json_has_the_http_apis_field_names(database_url: str, tmp_path: Path) -> None:
    spec = write_cli_app(tmp_path)
    send_in_process(database_url, "work", [{"i": 1}, {"i": 2}])
    ok("jobs", "enqueue", "double", '{"n": 1}', "--app", spec, url=database_url)
    document = tf_json("stats", "--interval", "0.2", url=database_url)
    assert set(document) == {"queues", "jobs", "workers", "limits"}
    assert document["limits"] == []  # no flow limit declared
    queues = {q["name"]: q for q in document["queues"]}
    assert {"work", "jobs"} <= set(queues)
    work = queues["work"]
    assert work["depth"]["ready"] == 2 and work["oldestPendingAgeSeconds"] >= 0
    assert work["processedPerSecond"] == 0 and document["workers"] == 0
    jobs = document["jobs"]
    assert (jobs["total"], jobs["pending"], jobs["completionRate"]) == (1, 1, "0.00%")
    assert jobs["byType"]["double"]["pending"] == 1

    http_stats, http_queue = _http_documents(database_url)
    assert set(jobs) == set(http_stats["stats"])
    assert set(jobs["byType"]["double"]) == set(http_stats["stats"]["byType"]["double"])
    assert set(work) - {"processedPerSecond"} == set(http_queue["queue"])
    assert set(work["depth"]) == set(http_queue["queue"]["depth"])

    table = ok("stats", "--interval", "0.2", url=database_url)
    assert "queues (0 workers alive)" in table and "completion" in table and "work" in table


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.kill()


def test_tail_prints_the_events_of_jobs_run_by_another_process(
    database_url: str, tmp_path: Path, followers: list[Follower]
) -> None:
    spec = write_cli_app(tmp_path)
    everything = Follower(tmp_path, "tail", "--interval", "0.1", url=database_url)
    markers = Follower(
        tmp_path, "tail", "--json", "--type", "marker", "--interval", "0.1", url=database_url
    )
    followers += [everything, markers]
    producer = App(database_url)

    def marker_seen() -> bool:
        """A tail starts at 'now': send markers until both tails show one (both are live)."""
        if "marker" in everything.stdout and "marker" in markers.stdout:
            return True
        for tail in (everything, markers):
            assert tail.proc.poll() is None, f"tail exited: {tail.stderr}"
        message = NewMessage(uuid7(), "markers", b"{}", "json", type="marker")

        async def send() -> None:
            await (await producer.backend()).message_enqueue_many(EnqueueParams([message]))

        producer.run_sync(send())
        return False

    try:
        wait_for(marker_seen, 60, "both tails to be live", interval=0.3)
    finally:
        producer.close_sync()
    worker = Follower(tmp_path, "worker", spec, url=database_url)
    followers.append(worker)
    good = ok("jobs", "enqueue", "double", '{"n": 21}', "--app", spec, url=database_url).strip()
    bad = ok("jobs", "enqueue", "boom", '{"n": 1}', "--app", spec, url=database_url).strip()

    alive = wait_for(
        lambda: tf_json("stats", url=database_url)["workers"] == 1, 60, "the worker's report"
    )
    assert alive
    everything.wait_for_output(rf"completed\s+double\s+{good}", 30)
    everything.wait_for_output(rf"failed\s+boom\s+{bad}", 30)
    lines = everything.stdout.splitlines()
    for kind in ("enqueued", "started", "completed"):
        (line,) = [x for x in lines if good in x and f" {kind} " in f" {x} "]
        assert "queue=jobs" in line
        if kind != "enqueued":
            assert "attempt=1" in line
    (failed,) = [x for x in lines if bad in x and " failed " in x]
    assert "error=RuntimeError: kaboom 1" in failed

    events = [json.loads(line) for line in markers.stdout.splitlines()]
    assert events and {e["type"] for e in events} == {"marker"}
    assert {e["event"] for e in events} == {"enqueued"}
    assert set(events[0]) >= {"event", "at", "jobId", "type", "queue", "attempt"}

    for tail in (everything, markers):  # Ctrl-C: a clean stop
        assert tail.stop(signal.SIGINT) == 0
        assert "Traceback" not in tail.stderr
    assert worker.stop() == 0
    # A clean stop takes the worker off the count at once (not after its report ages).
    assert tf_json("stats", url=database_url)["workers"] == 0


def _tmux(socket_name: str, *args: str) -> str:
    result = subprocess.run(
        ["tmux", "-L", socket_name, *args], capture_output=True, text=True, timeout=10
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _ready_of(screen: str, queue: str) -> int | None:
    for line in screen.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells and cells[0] == queue and len(cells) > 1 and cells[1].isdigit():
            return int(cells[1])
    return None


def test_stats_watch_refreshes_in_place_in_a_terminal_and_ctrl_c_ends_it(
    database_url: str,
) -> None:
    ok("migrate", database_url, url=None)  # the database exists (reading never creates one)
    socket_name = f"tf-{uuid.uuid4().hex[:10]}"
    command = (
        f"env TASKFLARE_DATABASE_URL={shlex.quote(database_url)} COLUMNS=160 "
        f"{shlex.quote(TASKFLARE)} stats --watch --interval 0.3; echo exit=$?; exec cat"
    )
    # One string: tmux runs it with `sh -c` (older tmux joins separate words anyway).
    _tmux(socket_name, "new-session", "-d", "-s", "w", "-x", "160", "-y", "50", command)
    try:

        def screen() -> str:
            return _tmux(socket_name, "capture-pane", "-p", "-t", "w")

        def first_screen() -> bool:
            text = screen()
            assert "exit=" not in text, f"stats --watch exited:\n{text}"
            return "updated" in text

        wait_for(first_screen, 60, "the first stats screen")
        sent = 0
        for burst in (3, 7):
            sent += len(send_in_process(database_url, "work", [{"i": i} for i in range(burst)]))
            wait_for(lambda n=sent: _ready_of(screen(), "work") == n, 60, f"{sent} ready on screen")
        history = _tmux(socket_name, "capture-pane", "-p", "-t", "w", "-S", "-")
        assert history.count("queues (") == 1, history  # redrawn in place, never scrolled
        assert history.count("updated ") == 1, history

        _tmux(socket_name, "send-keys", "-t", "w", "C-c")
        wait_for(lambda: "exit=" in screen(), 60, "stats --watch to exit on Ctrl-C")
        final = _tmux(socket_name, "capture-pane", "-p", "-t", "w", "-S", "-")
        assert "exit=0" in final and "Traceback" not in final, final
    finally:
        subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True, timeout=10)


def test_stats_watch_json_prints_one_document_a_line_until_ctrl_c(
    database_url: str, tmp_path: Path, followers: list[Follower]
) -> None:
    send_in_process(database_url, "work", [{"i": 1}])
    watch = Follower(tmp_path, "stats", "--watch", "--json", "--interval", "0.2", url=database_url)
    followers.append(watch)

    def two_samples() -> bool:
        assert watch.proc.poll() is None, f"stats exited: {watch.stderr}"
        return len(watch.stdout.splitlines()) >= 2

    wait_for(two_samples, 60, "two samples")
    for line in watch.stdout.splitlines()[:2]:
        document = json.loads(line)
        assert document["queues"][0]["depth"]["ready"] == 1
    assert watch.stop(signal.SIGINT) == 0
    assert "Traceback" not in watch.stderr


def test_help_of_following_commands_says_their_json_is_json_lines() -> None:
    tail_help, stats_help = (
        " ".join(r.stdout.split())
        for r in tf_many([["tail", "--help"], ["stats", "--help"]], url=None)
    )
    # `tail --json` prints a document per event until Ctrl-C, never one document.
    assert "one JSON document a line, JSON Lines" in tail_help, tail_help
    assert "Print one JSON document (for scripts)" not in tail_help, tail_help
    assert "with --watch, one a line (JSON Lines)" in stats_help, stats_help
