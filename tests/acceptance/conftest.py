"""Acceptance cases: black-box checks of documented behaviour through the public API,
HTTP and the command line, on both backends.

`serve(app)` runs the HTTP service of an app the test builds on a real uvicorn server on
127.0.0.1 (in a thread, with its own event loop); the test talks to it with httpx.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from taskflare import App
from taskflare.web import Tokens, create_api
from taskflare.web.security import HttpSecurity, uvicorn_options

TOKEN = "acceptance-token-5f1c2a"


@contextmanager
def serve(app: App) -> Iterator[httpx.Client]:
    """Serve `app` over HTTP until the block ends; yield a client holding the write token.

    `app` must not be used by the test's own event loop while it is served (build a
    second App on the same database for workers or checks)."""
    security = HttpSecurity(bind_host="127.0.0.1")
    api = create_api(app, Tokens(TOKEN, None), security)
    config = uvicorn.Config(
        api, lifespan="on", log_config=None, access_log=False, **uvicorn_options(security)
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the test server did not start")
        thread.join(0.02)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10.0,
    )
    try:
        yield client
    finally:
        client.close()
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"
