"""The listening socket's error for a port in use suggests only a port that was free."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from taskflare.web.listen import AddressUnavailable, bind_listener


def listening(stack: ExitStack, port: int) -> bool:
    """Listen on 127.0.0.1:`port` until `stack` closes; False when it cannot."""
    sock = stack.enter_context(socket.socket())
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    sock.listen()
    return True


@pytest.fixture
def three_taken() -> Iterator[int]:
    """A port p with p, p + 1 and p + 2 all listened on by another program."""
    for _ in range(50):
        with ExitStack() as stack:
            first = stack.enter_context(socket.socket())
            first.bind(("127.0.0.1", 0))
            first.listen()
            port = int(first.getsockname()[1])
            if port < 65533 and all(listening(stack, port + k) for k in (1, 2)):
                yield port
                return
    pytest.skip("no three consecutive free ports found")


def test_the_suggested_port_is_one_that_was_free(three_taken: int) -> None:
    with pytest.raises(AddressUnavailable) as raised:
        bind_listener("127.0.0.1", three_taken, option="--api-port")
    message = str(raised.value)
    assert f"port {three_taken} is already in use" in message, message
    suggested = [int(p) for p in re.findall(r"--api-port (\d+)", message)]
    assert 0 in suggested, message
    [other] = [p for p in suggested if p != 0]
    assert other > three_taken + 2, message  # not one of the ports in use
    with socket.socket() as probe:  # and it was free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", other))
