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
            raise AddressUnavailable(
                f"port {port} is already in use on {host} (another server is listening on "
                f"{where}); pick another with {option} {port + 1 if port < 65535 else 8000}, "
                f"or {option} 0 for any free port"
            ) from None
        raise AddressUnavailable(f"cannot listen on {where}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def bound_port(sock: socket.socket) -> int:
    """The port `sock` is bound to (the one chosen when 0 was asked)."""
    return int(sock.getsockname()[1])
