"""A port already in use: `taskflare dev` and `serve` say so in one line, claim nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from .cli_run import one_line_error, tf
from .conftest import Harness


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port some other program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def assert_names_the_port(line: str, port: int) -> None:
    assert f"port {port} is already in use" in line, line
    assert "--port" in line, line


def test_dev_with_its_port_taken_is_one_line_and_claims_nothing(
    harness: Harness, taken_port: int
) -> None:
    sent = harness.work.send_sync({"n": 1})
    result = tf(
        "dev",
        harness.spec,
        "--port",
        str(taken_port),
        "--duration",
        "5",
        url=harness.url,
        TF_LOG_DIR=str(harness.folder),
        cwd=harness.folder,
    )
    assert_names_the_port(one_line_error(result), taken_port)
    assert "HTTP API on" not in result.stdout
    message = harness.get(sent)
    assert message is not None
    assert (message.state, message.attempts) == ("ready", 0)


def test_serve_with_its_port_taken_is_one_line(harness: Harness, taken_port: int) -> None:
    result = tf(
        "serve",
        harness.spec,
        "--port",
        str(taken_port),
        "--log-level",
        "WARNING",
        url=harness.url,
        TF_LOG_DIR=str(harness.folder),
        cwd=harness.folder,
    )
    assert_names_the_port(one_line_error(result), taken_port)
