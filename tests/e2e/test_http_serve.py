"""`taskflare serve` as a subprocess: refuses a public address without a token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest

from helpers import HTTP_TIMEOUT

from .server import WRITE_TOKEN, free_socket, poll

TASKFLARE = str(Path(sys.executable).with_name("taskflare"))
APP = "from taskflare import App\napp = App({url!r})\napp.job('hello')(print)\n"


@pytest.fixture
def spec(tmp_path: Path, sqlite_url: str) -> str:
    (tmp_path / "served.py").write_text(APP.format(url=sqlite_url))
    return f"{tmp_path / 'served.py'}:app"


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLARE_API_")}
    return {**clean, **extra}


def free_port() -> int:
    with free_socket() as sock:
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def serve(tmp_path: Path, spec: str) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []
    files: list[BinaryIO] = []

    def start(*args: str, **extra: str) -> tuple[subprocess.Popen[bytes], int, Path]:
        port = free_port()
        err = tmp_path / f"serve-{port}.err"
        files.append(err.open("wb"))
        proc = subprocess.Popen(
            [TASKFLARE, "serve", spec, "--port", str(port), *args],
            env=env(**extra),
            stdout=subprocess.DEVNULL,
            stderr=files[-1],
            cwd=tmp_path,
        )
        procs.append(proc)
        return proc, port, err

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)
    for file in files:
        file.close()


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=HTTP_TIMEOUT).status_code == 200
    except httpx.TransportError:
        return False


def test_serve_refuses_a_public_address_without_a_token(spec: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [TASKFLARE, "serve", spec, "--host", "0.0.0.0", "--port", str(free_port())],
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TASKFLARE_API_TOKEN" in lines[0] and "--insecure" in lines[0]


def test_serve_on_a_public_address_with_insecure_or_a_token(serve: object) -> None:
    start = serve  # type: ignore[assignment]
    insecure, port, _ = start("--host", "0.0.0.0", "--insecure")
    poll(lambda: healthy(port), timeout=90, what="the insecure server")
    assert (
        httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=HTTP_TIMEOUT).status_code == 200
    )  # open: no token
    insecure.terminate()
    assert insecure.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught

    secured, port, err = start("--host", "0.0.0.0", TASKFLARE_API_TOKEN=WRITE_TOKEN)
    poll(lambda: healthy(port), timeout=90, what="the server with a token")
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/jobs", timeout=HTTP_TIMEOUT).status_code == 401
    assert (
        httpx.get(
            f"{base}/jobs", headers={"Authorization": "Bearer nope"}, timeout=HTTP_TIMEOUT
        ).status_code
        == 401
    )
    authorized = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    assert (
        httpx.post(
            f"{base}/jobs", json={"type": "hello"}, headers=authorized, timeout=HTTP_TIMEOUT
        ).status_code
        == 200
    )
    secured.terminate()
    secured.wait(15)
    assert WRITE_TOKEN not in err.read_text()


def test_serve_on_a_public_address_warns_of_a_short_token(serve: object) -> None:
    start = serve  # type: ignore[assignment]
    short, port, err = start("--host", "0.0.0.0", TASKFLARE_API_TOKEN="s3cret")
    poll(lambda: healthy(port), timeout=90, what="the server with a short token")
    # It serves (the token still guards every endpoint), and says why the token is weak,
    # naming the variable and its length, never the token.
    assert httpx.get(f"http://127.0.0.1:{port}/jobs", timeout=HTTP_TIMEOUT).status_code == 401
    short.terminate()
    short.wait(15)
    text = err.read_text()
    assert "TASKFLARE_API_TOKEN is 6 characters long" in text
    assert "secrets.token_urlsafe" in text and "s3cret" not in text

    long_enough, port, err = start("--host", "0.0.0.0", TASKFLARE_API_TOKEN=WRITE_TOKEN)
    poll(lambda: healthy(port), timeout=30, what="the server with a long token")
    long_enough.terminate()
    long_enough.wait(15)
    assert "characters long" not in err.read_text()
