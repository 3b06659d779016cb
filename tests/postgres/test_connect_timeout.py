"""How long a PostgreSQL connection may take: the URL's `connect_timeout` (libpq's
option), 30 s by default, for every connection: the first one (which reports a wrong
password or host in one line), the pool's and LISTEN's. A loaded server or machine can
take seconds to answer; the first connection used to give up after 5 s, whatever the
URL said."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit

import pytest

from integration.cli_run import ok, one_line_error, tf_many
from taskflare.backends.postgres.backend import DEFAULT_CONNECT_TIMEOUT, parse_postgres_url
from taskflare.errors import InvalidDatabaseUrl

on_postgres = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)

# Longer than the 5 s the first connection used to allow, far shorter than the default.
HOLD = 7.0


class SlowToAnswer:
    """A TCP proxy to the PostgreSQL server that holds back the server's first bytes for
    `hold` seconds on each connection: a server slow to accept under load."""

    def __init__(self, target: tuple[str, int], hold: float) -> None:
        self.target, self.hold = target, hold
        self.closing = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(server, client, self.hold), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, hold: float) -> None:
        with suppress(OSError):
            data = source.recv(65536)
            if hold and self.closing.wait(hold):  # the server's answer, held back
                return
            while data:
                sink.sendall(data)
                data = source.recv(65536)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closing.set()
        for sock in self.sockets:
            with suppress(OSError):
                sock.close()


@contextmanager
def slow_url(url: str, hold: float = HOLD, **options: str) -> Iterator[str]:
    """`url`, reaching its server through `SlowToAnswer`, with extra URL `options`."""
    parts = urlsplit(url)
    proxy = SlowToAnswer((parts.hostname or "127.0.0.1", parts.port or 5432), hold)
    netloc = parts.netloc.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}")
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    try:
        yield parts._replace(netloc=netloc).geturl() + extra
    finally:
        proxy.close()


def test_connect_timeout_defaults_to_30_s_and_the_urls_value_is_kept() -> None:
    base = "postgresql://app@db.internal/shop"
    assert DEFAULT_CONNECT_TIMEOUT == 30
    default = parse_postgres_url(base)
    assert "connect_timeout=30" in default.conninfo and default.connect_timeout == 30
    given = parse_postgres_url(f"{base}?connect_timeout=45")
    assert "connect_timeout=45" in given.conninfo and given.connect_timeout == 45
    for bad in ("ten", "-1", "1.5"):
        with pytest.raises(InvalidDatabaseUrl, match=f"connect_timeout='{bad}' in .* whole"):
            parse_postgres_url(f"{base}?connect_timeout={bad}")


@on_postgres
def test_cli_waits_for_a_server_slow_to_answer_as_long_as_connect_timeout_says(
    database_url: str,
) -> None:
    assert "?" in database_url  # the fixture's schema option: `&` adds more
    with slow_url(database_url) as default, slow_url(database_url, connect_timeout="60") as given:
        ok("migrate", default, url=None)  # the first connection took HOLD seconds
        listed, short = tf_many(
            [
                ["queues", "list", "--json", "--database-url", given],
                ["queues", "list", "--database-url", default + "&connect_timeout=2"],
            ],
            url=None,
        )
    assert listed.returncode == 0, listed.stderr
    line = one_line_error(short, 1)  # 2 s is less than the server took: the URL decides
    assert "timeout" in line, line
