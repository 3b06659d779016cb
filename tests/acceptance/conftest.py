"""Acceptance cases: black-box checks of documented behaviour through the public API,
HTTP and the command line, on both backends.

`serve(app)` runs the HTTP service of an app the test builds on a real uvicorn server on
127.0.0.1 (in a thread, with its own event loop); the test talks to it with httpx.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from e2e.server import serving
from taskflare import App
from taskflare.web import Tokens, create_api
from taskflare.web.security import HttpSecurity

TOKEN = "acceptance-token-5f1c2a"


@contextmanager
def serve(app: App) -> Iterator[httpx.Client]:
    """Serve `app` over HTTP until the block ends; yield a client holding the write token.

    `app` must not be used by the test's own event loop while it is served (build a
    second App on the same database for workers or checks)."""
    security = HttpSecurity(bind_host="127.0.0.1")
    api = create_api(app, Tokens(TOKEN, None), security)
    with serving(api, security) as (url, _):
        client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10.0
        )
        try:
            yield client
        finally:
            client.close()
