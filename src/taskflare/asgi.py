"""Web integration of `wait_until`: an ASGI middleware and a FastAPI dependency.

Each request gets its own `wait_until`; what is passed to it starts only after the
response has been sent, so slow best-effort work never delays the answer.

```python
api = FastAPI()
api.add_middleware(WaitUntilMiddleware, taskflare_app=app)

@api.post("/threads")
async def create(wait_until: RequestTasks = Depends(request_wait_until)):
    wait_until(generate_title(thread_id))
    return {"ok": True}
```
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from .background import to_awaitable

if TYPE_CHECKING:
    from .app import App

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestTasks:
    """The `wait_until` of one HTTP request: work collected now, started after the response."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._pending: list[Awaitable[Any]] = []
        self._sent = False

    def __call__(
        self, fn_or_awaitable: Any, *args: Any, durable: bool = False, **kwargs: Any
    ) -> Any:
        """Like `App.wait_until`, but not started until the response has been sent."""
        if durable:
            return self._app.wait_until(fn_or_awaitable, *args, durable=True, **kwargs)
        awaitable = to_awaitable(fn_or_awaitable, args, kwargs)
        if self._sent:
            self._app.wait_until(awaitable)
        else:
            self._pending.append(awaitable)
        return None

    def release(self) -> None:
        """The response is out: start everything collected."""
        self._sent = True
        pending, self._pending = self._pending, []
        for awaitable in pending:
            self._app.wait_until(awaitable)


class WaitUntilMiddleware:
    """ASGI middleware: `request.state.wait_until(...)` (or the FastAPI dependency) per request.

    On the server's lifespan shutdown it waits for pending `wait_until` work (up to the
    app's `wait_until_limit`), then logs and cancels what it abandons.

    `app = WaitUntilMiddleware(asgi_app, taskflare_app)` or, with Starlette/FastAPI,
    `api.add_middleware(WaitUntilMiddleware, taskflare_app=taskflare_app)`.
    """

    def __init__(self, app: ASGIApp, taskflare_app: App) -> None:
        self.app = app
        self.taskflare_app = taskflare_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._drain_on_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tasks = RequestTasks(self.taskflare_app)
        scope.setdefault("state", {})["wait_until"] = tasks

        async def send_then_release(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                tasks.release()

        try:
            await self.app(scope, receive, send_then_release)
        finally:
            tasks.release()

    def _drain_on_shutdown(self, receive: Receive) -> Receive:
        """The server is stopping: wait for pending work (up to the limit) before the app's
        own shutdown runs, so the work can still use what the app closes then."""

        async def receive_then_drain() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.taskflare_app.background.drain()
            return message

        return receive_then_drain


def request_wait_until(request: Request) -> RequestTasks:
    """FastAPI dependency: `wait_until: RequestTasks = Depends(request_wait_until)`."""
    tasks = request.scope.get("state", {}).get("wait_until")
    if tasks is None:
        raise RuntimeError("add taskflare.asgi.WaitUntilMiddleware to the ASGI app first")
    assert isinstance(tasks, RequestTasks)
    return tasks
