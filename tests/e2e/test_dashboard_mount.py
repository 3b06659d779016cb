"""The dashboard mounted in a user's own FastAPI app under a prefix, served by uvicorn."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from taskflare import App
from taskflare.web import Tokens, create_dashboard

from .server import free_socket


@contextmanager
def serving(api: FastAPI) -> Iterator[str]:
    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(api, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        thread.join(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text[:500]
    return found.group(1)


def test_mounted_under_a_prefix_signs_in_and_acts(sqlite_url: str) -> None:
    app = App(sqlite_url)
    app.queue("emails")
    api = FastAPI()
    api.mount("/admin/jobs", create_dashboard(app, Tokens(write="w-token", read="r-token")))
    try:
        with serving(api) as url, httpx.Client(base_url=url) as client:
            first = client.get("/admin/jobs/queues/emails")
            assert first.status_code == 303
            # `next` is the page inside the dashboard; the sign-in adds the prefix.
            assert first.headers["location"] == "/admin/jobs/login?next=/queues/emails"
            assert "Path=/admin/jobs;" in first.headers["set-cookie"]
            # The sign-in form carries the `next` the redirect gave it, as a browser's does.
            form = client.get(first.headers["location"])
            found = re.search(r'name="next" value="([^"]+)"', form.text)
            assert found is not None and found.group(1) == "/queues/emails"
            signed = client.post(
                "/admin/jobs/login",
                data={"csrf": csrf_of(form), "token": "w-token", "next": found.group(1)},
            )
            assert (
                signed.status_code == 303
                and signed.headers["location"] == "/admin/jobs/queues/emails"
            )
            page = client.get("/admin/jobs/queues/emails")
            assert (
                page.status_code == 200 and 'href="/admin/jobs/static/dashboard.css"' in page.text
            )
            paused = client.post(
                "/admin/jobs/queues/emails/pause",
                data={"csrf": csrf_of(page)},
                headers={"Origin": url},
            )
            assert paused.status_code == 303
            assert app.run_sync(app.read.queue_depths("emails"))[0]["paused"] is True
    finally:
        app.close_sync()


def test_without_tokens_only_this_machine_under_a_loopback_name(sqlite_url: str) -> None:
    app = App(sqlite_url)
    api = FastAPI()
    api.mount("/ops", create_dashboard(app, Tokens(None, None)))
    try:
        with serving(api) as url, httpx.Client(base_url=url) as client:
            assert client.get("/ops/").status_code == 200  # open: no sign-in on loopback
            rebound = client.get("/ops/", headers={"Host": "evil.example:80"})
            assert rebound.status_code == 403  # a DNS name rebound to 127.0.0.1
    finally:
        app.close_sync()


def test_signing_in_lands_on_the_page_that_asked_for_it(sqlite_url: str) -> None:
    """From any page (the server's root included), the sign-in redirect, its form and the
    sign-in land on that page under every prefix: `next` held the mount's prefix, which
    the sign-in added again (`/dashboard/dashboard/`: a 404 after every sign-in)."""
    from taskflare.web.api import create_api

    app = App(sqlite_url)
    app.queue("emails")
    tokens = Tokens(write="w-token", read="r-token")
    mounted = FastAPI()
    mounted.mount("/admin/jobs", create_dashboard(app, tokens))
    served = [
        (create_api(app, tokens), "/dashboard", ["/", "/dashboard/", "/dashboard/jobs"]),
        (mounted, "/admin/jobs", ["/admin/jobs/", "/admin/jobs/queues/emails?x=1"]),
    ]
    try:
        for api, prefix, starts in served:
            with serving(api) as url:
                for start in starts:
                    with httpx.Client(base_url=url, follow_redirects=True) as client:
                        form = client.get(start, headers={"Accept": "text/html"})
                        assert form.url.path == f"{prefix}/login", (start, form.url)
                        found = re.search(r'name="next" value="([^"]*)"', form.text)
                        assert found is not None, form.text[:500]
                        page = client.post(
                            f"{prefix}/login",
                            data={"csrf": csrf_of(form), "token": "w-token", "next": found[1]},
                            headers={"Origin": url},
                        )
                        wanted = f"{prefix}/" if start == "/" else start
                        assert page.status_code == 200, (start, page.url, page.text[:300])
                        assert page.url.raw_path.decode() == wanted, (start, page.url)
    finally:
        app.close_sync()
