"""The dashboard's browser tests: per test module, one real `taskflare serve` and one real
`taskflare worker` process on a fresh database of each backend, and one headless Debian
Chromium driven by Playwright (launched from /usr/bin/chromium, never downloaded)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import _fresh_postgres_url
from helpers import HTTP_TIMEOUT

CHROMIUM = "/usr/bin/chromium"
TASKFLARE = str(Path(sys.executable).with_name("taskflare"))
HERE = Path(__file__).parent
WRITE_TOKEN = "dash-write-5b2f0c"
READ_TOKEN = "dash-read-8e1d4a"


def poll(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "condition",
    seen: Callable[[], Any] | None = None,
) -> Any:
    """Call `predicate` until it returns something truthy; fail after `timeout` seconds
    (saying what `seen()` shows then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            shown = f"; seen: {seen()!r}" if seen is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{shown}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Stack:
    """A served app with a worker: where it is, and how to reach its API."""

    url: str
    database_url: str
    flag: Path
    folder: Path
    procs: dict[str, subprocess.Popen[bytes]]

    @property
    def dashboard(self) -> str:
        return f"{self.url}/dashboard"

    def api(self, token: str = WRITE_TOKEN) -> httpx.Client:
        """The HTTP API with a bearer token."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
        )

    def enqueue(self, payload: Any, **extra: Any) -> str:
        with self.api() as api:
            answer = api.post("/jobs", json={"type": "report", "payload": payload, **extra})
        answer.raise_for_status()
        job_id: str = answer.json()["jobId"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        with self.api() as api:
            job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()["job"]
        return job

    def queue(self, name: str) -> dict[str, Any]:
        with self.api() as api:
            queue: dict[str, Any] = api.get(f"/queues/{name}").json()["queue"]
        return queue

    def send(self, queue: str, body: Any) -> None:
        with self.api() as api:
            api.post(f"/queues/{queue}/messages", json={"body": body}).raise_for_status()


def _env(url: str, flag: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLARE_")}
    env.update(
        TF_URL=url,
        TF_FLAG=str(flag),
        PYTHONPATH=str(HERE),
        TASKFLARE_API_TOKEN=WRITE_TOKEN,
        TASKFLARE_API_READ_TOKEN=READ_TOKEN,
    )
    return env


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database for the module: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('dash') / 'taskflare.db'}"
        return
    yield from _fresh_postgres_url()


@pytest.fixture(scope="module")
def stack(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`taskflare serve` and `taskflare worker` running the test app on `database`."""
    folder = tmp_path_factory.mktemp("stack")
    flag = folder / "flag"
    port = free_port()
    env = _env(database, flag)
    subprocess.run(
        [TASKFLARE, "migrate", database], env=env, check=True, capture_output=True, timeout=60
    )
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    for name, args in (
        ("serve", ["serve", "dashboard_app:app", "--port", str(port)]),
        ("worker", ["worker", "dashboard_app:app", "--concurrency", "4"]),
    ):
        log = (folder / f"{name}.log").open("wb")
        logs.append(log)
        procs[name] = subprocess.Popen(
            [TASKFLARE, *args], env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited: {(folder / f'{name}.log').read_text()}")
        try:
            return httpx.get(f"{url}/health", timeout=HTTP_TIMEOUT).status_code == 200
        except httpx.TransportError:
            return False

    try:
        poll(healthy, 90, "taskflare serve")  # inside: a server that never came up is stopped
        yield Stack(url, database, flag, folder, procs)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in logs:
            log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Debian's, through Playwright)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/bootstrap --test (installs Debian's chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(page: Any, stack: Stack, token: str = WRITE_TOKEN) -> None:
    """Sign `page` in through the form."""
    page.goto(f"{stack.dashboard}/login")
    page.fill("#token", token)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{stack.dashboard}/")


# Per tab (by id): parts of URLs whose loading a test makes fail on purpose.
_EXPECTED: dict[int, list[str]] = {}


def expect_failed_load(page: Any, url_part: str) -> None:
    """The test makes `page` load a URL holding `url_part` that must fail (a forged form's
    403, a GET on an action): the browser's console error for it is not a problem."""
    _EXPECTED.setdefault(id(page), []).append(url_part)


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A new signed-in tab (its own cookies) at 1280x800; fails the test on a page error,
    an error in the browser's console (a request the dashboard makes that fails, its
    icon's included) or an unexpected dialog."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def on_console(msg: Any) -> None:
        url = str(msg.location.get("url", ""))
        if msg.type == "error" and not any(part in url for part in _EXPECTED.get(id(tab), ())):
            problems.append(f"console: {msg.text} at {url}")

    tab.on("console", on_console)
    sign_in(tab, stack)
    try:
        yield tab
    finally:
        _EXPECTED.pop(id(tab), None)
        context.close()
    assert not problems, problems
