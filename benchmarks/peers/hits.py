"""The no-op task's only work: tell the measuring process that it ran, by UDP on localhost.

`$PB_MODE` drain: count calls; at the `$PB_TARGET`-th send the first and last call times
(a reporter thread also sends the running count every 0.5 s, for a drain that times out).
`$PB_MODE` pickup: send each call's start time minus the enqueue time it was given.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import threading
import time
from typing import Any

MODE = os.environ.get("PB_MODE", "drain")
TARGET = int(os.environ.get("PB_TARGET") or 0)
PORT = int(os.environ.get("PB_UDP_PORT") or 0)

_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_count = itertools.count(1)  # next() is atomic under the GIL: safe from worker threads
_state: dict[str, Any] = {"first": None, "n": 0}


def _send(kind: str, **data: Any) -> None:
    if PORT:
        _sock.sendto(json.dumps({"kind": kind, **data}).encode(), ("127.0.0.1", PORT))


def hit(t: float = 0.0) -> None:
    """Called first thing by every adapter's no-op task; `t` is the enqueue time (pickup)."""
    now = time.time()
    if MODE == "pickup":
        _send("pickup", latency=now - float(t))
        return
    n = next(_count)
    if n == 1:
        _state["first"] = now
    _state["n"] = n
    if n == TARGET:
        _send("done", first=_state["first"], last=now, n=n)


def start_reporter() -> None:
    """In a drain worker: send the running count every 0.5 s."""
    if MODE != "drain":
        return

    def loop() -> None:
        while True:
            _send("progress", first=_state["first"], n=_state["n"], ts=time.time())
            time.sleep(0.5)

    threading.Thread(target=loop, daemon=True, name="pb-reporter").start()


class Listener:
    """The measuring side: a UDP socket the worker's hits are sent to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.progress: dict[str, Any] = {}

    def wait(self, kind: str, timeout: float) -> dict[str, Any] | None:
        """The next message of `kind` within `timeout` s (progress messages are kept aside)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = json.loads(self.sock.recv(512))
            except TimeoutError:
                return None
            if message["kind"] == kind:
                return message  # type: ignore[no-any-return]
            if message["kind"] == "progress":
                self.progress = message
        return None

    def close(self) -> None:
        self.sock.close()
