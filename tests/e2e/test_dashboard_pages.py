"""Dashboard pages over HTTP against a real server (what the browser tests do not look
at): bodies of every content type shown as text, a large payload cut with a way to see
all, a silent worker marked stale."""

from __future__ import annotations

import asyncio
import base64
import html
import pickle
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from helpers import HTTP_TIMEOUT
from taskflare import App
from taskflare.backends.base import WorkerReport

from .server import WRITE_TOKEN, LiveServer


@contextmanager
def signed_in(live: LiveServer) -> Iterator[httpx.Client]:
    """A client of the dashboard, signed in with the write token."""
    with httpx.Client(base_url=live.url, timeout=HTTP_TIMEOUT) as client:
        sign_in(client)
        yield client


def sign_in(client: httpx.Client) -> None:
    form = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None, form.text[:300]
    answer = client.post("/dashboard/login", data={"csrf": csrf.group(1), "token": WRITE_TOKEN})
    assert answer.status_code == 303, answer.text


def test_message_bodies_of_every_content_type_show_as_text(sqlite_live: LiveServer) -> None:
    evil = "<script>window.owned = 1</script>"

    async def send() -> None:
        app = App(sqlite_live.database_url)
        store = app.queue("store", allow_pickle=True)
        try:
            await app.declare_queues()
            await store.send({"note": evil}, content_type="json")
            await store.send(evil, content_type="text")
            await store.send(b"\x00\xff" + evil.encode(), content_type="bytes")
            await store.send({"pickled": evil}, content_type="pickle")
        finally:
            await app.close()

    asyncio.run(send())
    with signed_in(sqlite_live) as client:
        page = client.get("/dashboard/queues/store/messages")
    assert page.status_code == 200
    assert "<script>window.owned" not in page.text  # nothing stored becomes markup
    text = html.unescape(page.text)
    assert '"note": "<script>window.owned = 1</script>"' in text  # JSON, pretty
    assert evil in text  # text as it is
    assert base64.b64encode(b"\x00\xff" + evil.encode()).decode() in text  # bytes: base64
    shown = re.search(
        r'<span class="ctype">pickle</span><pre class="json small">([^<]*)</pre>', page.text
    )
    assert shown is not None  # pickle: base64 of the stored bytes, never unpickled by the page
    assert pickle.loads(base64.b64decode(shown.group(1))) == {"pickled": evil}
    for kind in ("json", "text", "bytes", "pickle"):
        assert f'<span class="ctype">{kind}</span>' in page.text


def test_a_large_payload_is_cut_with_a_link_to_all_of_it(sqlite_live: LiveServer) -> None:
    body = "x" * 9000 + "THE-END"
    with sqlite_live.client() as api:
        made = api.post(
            "/jobs",
            json={"type": "send-email", "payload": {"to": "a@b.c", "subject": "s", "body": body}},
        )
        assert made.status_code in (200, 201, 202), made.text
        job_id = made.json()["jobId"]
    with signed_in(sqlite_live) as client:
        cut = client.get(f"/dashboard/jobs/{job_id}")
        assert "THE-END" not in cut.text
        assert 'data-testid="show-all"' in cut.text
        whole = client.get(f"/dashboard/jobs/{job_id}?full=1")
        assert "THE-END" in whole.text and 'data-testid="show-all"' not in whole.text


def test_a_worker_silent_for_30_seconds_is_marked_stale(sqlite_live: LiveServer) -> None:
    async def report() -> None:
        app = App(sqlite_live.database_url)
        try:
            backend = await app.backend()
            for worker_id in ("w-live", "w-silent"):
                stats = '{"worker": {"queues": ["emails"], "concurrency": 4, "inFlight": 0}}'
                await backend.worker_report(
                    WorkerReport(worker_id, "host-a", 4242, time.time(), time.time(), stats)
                )
        finally:
            await app.close()

    asyncio.run(report())
    path = sqlite_live.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:  # as if it had last reported a minute ago
        conn.execute("UPDATE workers SET last_seen = last_seen - 60 WHERE id = 'w-silent'")
    with signed_in(sqlite_live) as client:
        page = client.get("/dashboard/workers").text
    silent = re.search(r'<tr class="(\w+)" data-worker="w-silent">', page)
    live = re.search(r'<tr class="(\w+)" data-worker="w-live">', page)
    assert silent is not None and silent.group(1) == "stale"
    assert live is not None and live.group(1) == "alive"


def test_the_root_sends_a_browser_to_the_dashboard(sqlite_live: LiveServer) -> None:
    with httpx.Client(base_url=sqlite_live.url, timeout=HTTP_TIMEOUT) as client:
        browser = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
        assert browser.status_code == 303
        assert browser.headers["location"].endswith("/dashboard/")
        program = client.get("/", headers={"Accept": "application/json"})
        assert program.json()["dashboard"] == "/dashboard/"


def test_a_wrong_method_names_every_method_the_path_answers(sqlite_live: LiveServer) -> None:
    """A 405 carries `Allow` with every method the path takes (RFC 9110, 15.5.6), also
    where two routes serve one path (the API's GET and POST /jobs)."""
    with httpx.Client(base_url=sqlite_live.url, timeout=HTTP_TIMEOUT) as client:
        login = client.put("/dashboard/login")
        assert login.status_code == 405
        assert login.headers["allow"] == "GET, HEAD, POST"
        jobs = client.delete("/jobs", headers={"Authorization": f"Bearer {WRITE_TOKEN}"})
        assert jobs.status_code == 405
        assert jobs.headers["allow"] == "GET, HEAD, POST"
        logout = client.get("/dashboard/logout")
        assert logout.status_code == 405 and logout.headers["allow"] == "POST"


def test_a_bulk_count_says_at_least_beyond_its_window(sqlite_live: LiveServer) -> None:
    email = {"to": "a@b.c", "subject": "s", "body": "needle-in-old"}

    async def fill() -> None:
        async with sqlite_live.worker_app() as app:
            await app.enqueue_many("send-email", [email] * 3)
            filler = {"to": "a@b.c", "subject": "s", "body": "hay"}
            await app.enqueue_many("send-email", [filler] * 5_000)

    with signed_in(sqlite_live) as client:
        asyncio.run(fill())
        few = client.get("/dashboard/jobs/count", params={"text": "hay", "type": "send-email"})
        assert few.json() == {"count": 1001, "shown": "1 000+", "atLeast": True}
        old = client.get("/dashboard/jobs/count", params={"text": "needle-in-old"}).json()
        assert old == {"count": 0, "shown": "at least 0", "atLeast": True}  # past the window
        capped = client.get("/dashboard/jobs/count", params={"type": "send-email"}).json()
        assert capped == {"count": 1001, "shown": "1 000+", "atLeast": True}
        # A queue none of the newest 1 001 jobs is on: the count stops there, and says so.
        beyond = client.get("/dashboard/jobs/count", params={"queue": "nowhere"}).json()
        assert beyond == {"count": 0, "shown": "at least 0", "atLeast": True}
        none = client.get("/dashboard/jobs/count", params={"type": "no-such-type"}).json()
        assert none == {"count": 0, "shown": "0", "atLeast": False}


def test_a_test_message_with_a_bad_delay_is_refused_naming_the_delay_field(
    sqlite_live: LiveServer,
) -> None:
    """The queue page's send form: a delay that is not a number of seconds is refused with
    a flash naming the form's `delay` field (not Python's float() message, nor the
    library's `delay_seconds`), and nothing is sent."""
    with signed_in(sqlite_live) as client:
        page = client.get("/dashboard/queues/emails")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        for delay, says in (
            ("abc", "delay: 'abc' is not a number of seconds"),
            ("1e400", "delay must be a finite number"),
            ("-1", "delay must not be negative"),
        ):
            answer = client.post(
                "/dashboard/queues/emails/send",
                data={"csrf": csrf.group(1), "body": "{}", "content_type": "json", "delay": delay},
                follow_redirects=True,
            )
            assert answer.status_code == 200
            flash = html.unescape(answer.text)
            assert f"Not sent: {says}" in flash, flash[:2000]
            assert "could not convert" not in flash and "delay_seconds" not in flash
        ok = client.post(
            "/dashboard/queues/emails/send",
            data={"csrf": csrf.group(1), "body": "{}", "content_type": "JSON", "delay": ""},
            follow_redirects=True,
        )
        assert "Sent test message" in ok.text
    with sqlite_live.client() as api:
        depth = api.get("/queues/emails").json()["queue"]["depth"]
    assert depth["ready"] == 1  # only the good one was sent
