"""A real HTTP server for tests: uvicorn on 127.0.0.1, a free port, in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from .procs import wait_for


@contextmanager
def serving(asgi_app: Any) -> Iterator[tuple[str, uvicorn.Server]]:
    """Run `asgi_app` under uvicorn in a thread on a free port; yield its base URL and the
    server (set `server.should_exit` to stop it early, as SIGTERM would)."""
    config = uvicorn.Config(asgi_app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 60, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"
