"""`wait_until` in a web app (issue 5, point 8), with a real uvicorn server on 127.0.0.1:
the response arrives before a task ends, the task completes afterwards, and a server
shutting down waits for what is still pending. The tasks end only when the test opens
their gate, so what these tests see is ordering, not how fast a loaded machine is."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from helpers import HTTP_TIMEOUT
from taskflare import App
from taskflare.asgi import RequestTasks, WaitUntilMiddleware, request_wait_until

from .procs import wait_for
from .servers import serving


class Marks:
    """Wall-clock marks set by the server side, read by the test (thread-safe enough)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    def mark(self, name: str) -> None:
        self.times[name] = time.monotonic()


def marking_shutdown(asgi: Any, marks: Marks) -> Any:
    """`asgi`, with marks when the server's lifespan shutdown reaches it ("shutdown
    received") and when it answers that it is done ("shutdown complete")."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await asgi(scope, receive, send)
            return

        async def receiving() -> Any:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                marks.mark("shutdown received")
            return message

        async def sending(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                marks.mark("shutdown complete")
            await send(message)

        await asgi(scope, receiving, sending)

    return wrapped


def fastapi_app(app: App, marks: Marks, done_file: Path, gate: threading.Event) -> FastAPI:
    api = FastAPI()
    api.add_middleware(WaitUntilMiddleware, taskflare_app=app)

    async def generate_title(thread_id: str) -> None:
        marks.mark("task started")
        # The slow AI call: until the test says (cancellable, as a real await would be).
        await anyio.to_thread.run_sync(gate.wait, abandon_on_cancel=True)
        await anyio.Path(done_file).write_text(thread_id)
        marks.mark("task ended")

    @api.post("/threads/{thread_id}")
    async def create_thread(
        thread_id: str, wait_until: Annotated[RequestTasks, Depends(request_wait_until)]
    ) -> dict[str, Any]:
        wait_until(generate_title(thread_id))
        marks.mark("handler returned")
        return {"id": thread_id, "title": "New chat"}

    return api


def test_fastapi_response_arrives_before_the_task_ends_and_the_task_completes(
    tmp_path: Path, sqlite_url: str
) -> None:
    app = App(sqlite_url)
    marks = Marks()
    done_file = tmp_path / "title.txt"
    gate = threading.Event()
    with serving(fastapi_app(app, marks, done_file, gate)) as (url, _):
        # The task cannot end before the gate opens: a response that waited for it would
        # never come (the client gives up after 60 s).
        response = httpx.post(f"{url}/threads/t-42", timeout=60)
        received = time.monotonic()
        assert response.status_code == 200
        assert response.json() == {"id": "t-42", "title": "New chat"}
        assert "task ended" not in marks.times, "the response waited for the task"
        assert not done_file.exists()
        gate.set()
        wait_for(done_file.exists, 60, "the wait_until task to finish")
    assert done_file.read_text() == "t-42"
    assert marks.times["task ended"] > received
    # The task started only once the handler had returned (after the response was sent).
    assert marks.times["task started"] >= marks.times["handler returned"]
    app.close_sync()


def test_a_server_shutting_down_waits_for_pending_tasks(tmp_path: Path, sqlite_url: str) -> None:
    app = App(sqlite_url)
    marks = Marks()
    done_file = tmp_path / "title.txt"
    gate = threading.Event()
    with serving(marking_shutdown(fastapi_app(app, marks, done_file, gate), marks)) as (
        url,
        server,
    ):
        assert httpx.post(f"{url}/threads/t-7", timeout=60).status_code == 200
        wait_for(lambda: "task started" in marks.times, 60, "the task to start")
        server.should_exit = True  # like SIGTERM, while the task is running
        # The task ends only once the shutdown has begun: a server that did not wait for
        # it would have completed its shutdown before (or cancelled the task).
        wait_for(lambda: "shutdown received" in marks.times, 60, "the lifespan shutdown")
        gate.set()
    # `serving` returned only after uvicorn stopped; the task had finished by then.
    assert done_file.read_text() == "t-7"
    assert marks.times["task ended"] <= marks.times["shutdown complete"]
    app.close_sync()


def test_plain_starlette_reads_wait_until_from_the_request_state(
    tmp_path: Path, sqlite_url: str
) -> None:
    app = App(sqlite_url)
    marks = Marks()

    gate = threading.Event()

    def write_done(name: str) -> None:  # a plain function runs in a thread
        gate.wait(60)  # simulated blocking work: until the test says
        (tmp_path / f"{name}.tmp").write_text(name)
        (tmp_path / f"{name}.tmp").rename(tmp_path / name)
        marks.mark(name)

    async def webhook(request: Request) -> JSONResponse:
        request.scope["state"]["wait_until"](write_done, "from-scope")
        request.state.wait_until(write_done, "from-request-state")
        return JSONResponse({"received": True})

    starlette = Starlette(routes=[Route("/hook", webhook, methods=["POST"])])
    with serving(WaitUntilMiddleware(starlette, app)) as (url, _):
        response = httpx.post(f"{url}/hook", timeout=HTTP_TIMEOUT)
        assert response.json() == {"received": True}
        assert marks.times == {}, "the response waited for the work"
        gate.set()
        wait_for(lambda: len(marks.times) == 2, 60, "the wait_until work to finish")
    assert (tmp_path / "from-scope").read_text() == "from-scope"
    assert (tmp_path / "from-request-state").read_text() == "from-request-state"
    app.close_sync()


def test_the_fastapi_dependency_without_the_middleware_says_what_to_add() -> None:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with pytest.raises(RuntimeError, match=r"add taskflare\.asgi\.WaitUntilMiddleware"):
        request_wait_until(request)
