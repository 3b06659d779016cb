"""The listening socket, bound before anything else starts (so a port in use is one line)."""

from __future__ import annotations

import errno
import socket

from ..errors import TaskflareError


class AddressUnavailable(TaskflareError):
    """The address to listen on is taken (or not this machine's): the message names it."""


def bind_listener(host: str, port: int, *, option: str = "--port") -> socket.socket:
    """A TCP socket bound to `host:port` (port 0: any free one), ready for uvicorn.

    Raises `AddressUnavailable` with one line naming the address and `option`, the
    command-line option that picks another port.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressUnavailable(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            free = _free_port_after(family, kind, proto, address, port)
            another = f"{option} {free}, or " if free is not None else ""
            raise AddressUnavailable(
                f"port {port} is already in use on {host} (another server is listening on "
                f"{where}); pick another with {another}{option} 0 for any free port"
            ) from None
        raise AddressUnavailable(f"cannot listen on {where}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _free_port_after(
    family: socket.AddressFamily,
    kind: socket.SocketKind,
    proto: int,
    address: tuple[object, ...],
    port: int,
    tries: int = 20,
) -> int | None:
    """The first of the `tries` ports after `port` that could be bound at `address` now
    (a port suggested to the user must be one that was free when it was checked)."""
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address[0], candidate, *address[2:]))
            except OSError:
                continue
            return candidate
    return None


def bound_port(sock: socket.socket) -> int:
    """The port `sock` is bound to (the one chosen when 0 was asked)."""
    return int(sock.getsockname()[1])
