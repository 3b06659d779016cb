"""Outgoing HTTP for the built-in job types, safe against server-side request forgery.

A URL that a payload names is resolved first; every address it resolves to must be
public (not loopback, private, link-local, carrier-grade NAT, multicast, reserved or a
cloud metadata address) unless the settings allow it. The request then goes to the
checked address itself (the Host header and TLS server name stay the URL's), so a DNS
answer that changes between the check and the connection cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from ..retry import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services, refused even when private addresses are allowed.
METADATA = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("169.254.170.2/32"),
    ipaddress.ip_network("100.100.100.200/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)


# IPv6 ranges that carry an IPv4 address in their last 32 bits (RFC 4291 compatible,
# RFC 6052 NAT64 well-known prefix, RFC 2765 translated); 6to4 (2002::/16) carries it in
# bits 16-47 (`IPv6Address.sixtofour`).
_V4_IN_LAST_32 = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
)
# Not public, though Python's `is_global` says so on some versions: site-local (RFC 3879,
# deprecated but still routed inside some networks) and local-use NAT64 (RFC 8215).
NOT_PUBLIC_V6 = (ipaddress.ip_network("fec0::/10"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address `ip` carries (NAT64, 6to4, IPv4-compatible or -translated), if any."""
    if ip.sixtofour is not None:
        return ip.sixtofour
    if int(ip) > 1 and any(ip in net for net in _V4_IN_LAST_32):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class BlockedDestination(PermanentError):
    """The URL resolves to an address the settings do not allow (loopback, private, ...)."""


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Which addresses outgoing requests may reach: public ones always; `allowed_networks`
    (e.g. `127.0.0.1/32` in tests) too; every non-public one when `allow_private`
    (metadata addresses never, unless listed in `allowed_networks`)."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def create(cls, allow_private: bool, networks: Iterable[str]) -> DestinationPolicy:
        """A policy from settings (`ValueError` for a bad network)."""
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in networks))

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` may not be reached, or None if it may. An IPv6 address that carries an
        IPv4 address (mapped, compatible, translated, NAT64, 6to4) is judged by that IPv4
        address too: a NAT64 gateway or a 6to4 relay delivers it there."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed_networks):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = embedded_ipv4(ip)
            if embedded is not None:
                reason = self.refusal(embedded)
                if reason is not None:
                    return f"{reason[: -len(' address')]} address inside {ip}"
            if any(ip in net for net in NOT_PUBLIC_V6):
                return None if self.allow_private else "a site-local or local NAT64 address"
        if any(ip in net for net in METADATA):
            return "a cloud metadata address"
        if ip.is_global and not ip.is_multicast:
            return None
        if self.allow_private:
            return None
        for label, test in (
            ("loopback", ip.is_loopback),
            ("link-local", ip.is_link_local),
            ("private", ip.is_private),
            ("multicast", ip.is_multicast),
            ("unspecified", ip.is_unspecified),
            ("reserved", ip.is_reserved),
        ):
            if test:
                return f"a {label} address"
        return "not a public address"


async def resolve(host: str, port: int, policy: DestinationPolicy) -> str:
    """An allowed address of `host` (every address it resolves to must be allowed).

    `BlockedDestination` (permanent) if one is not; `OSError` if the name does not
    resolve now (retried)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except socket.gaierror as exc:  # bare, it names no host: "[Errno -2] Name or ..."
            raise OSError(f"{host} did not resolve ({exc.strerror or exc})") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not addresses:
            raise OSError(f"{host} did not resolve")
    for ip in addresses:
        reason = policy.refusal(ip)
        if reason is not None:
            raise BlockedDestination(
                f"{host} resolves to {ip}, {reason}; requests there are refused (allow it in "
                "the settings: allowed_networks, or allow_private)"
            )
    return str(addresses[0])


def check_url(url: str, field: str = "url") -> httpx.URL:
    """An absolute http(s) URL without credentials; `ValueError` naming `field` otherwise."""
    try:
        parsed = httpx.URL(url)
    except Exception:
        raise ValueError(f"{field}: not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{field}: must be an absolute http:// or https:// URL")
    if parsed.userinfo:
        raise ValueError(f"{field}: must not hold a user name or password")
    return parsed


async def pinned_request(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    policy: DestinationPolicy,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    timeout: float | None = None,
) -> httpx.Response:
    """Send one request to `url` via an address checked by `policy` (no redirects followed).
    The body is not read: the caller reads it (at most what it needs, see `read_limited`,
    or `pinned_fetch`) and closes the response. A body is never read whole: the server at
    the other end is the payload's, and a gigabyte answer must not become a gigabyte here."""
    port = url.port or (443 if url.scheme == "https" else 80)
    ip = await resolve(url.host, port, policy)
    host_header = url.host if url.port is None else f"{url.host}:{url.port}"
    if ":" in url.host:
        host_header = f"[{url.host}]" if url.port is None else f"[{url.host}]:{url.port}"
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.host
    request = client.build_request(
        method,
        url.copy_with(host=ip),
        headers={**(headers or {}), "Host": host_header},
        content=content,
        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        extensions=extensions,
    )
    return await client.send(request, follow_redirects=False, stream=True)


async def read_limited(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of a streamed response's (decoded) body; the rest is not read."""
    parts: list[bytes] = []
    size = 0
    if limit > 0:
        async for chunk in response.aiter_bytes():
            parts.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    return b"".join(parts)[:limit]


async def pinned_fetch(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    policy: DestinationPolicy,
    limit: int,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    timeout: float | None = None,
) -> tuple[httpx.Response, bytes]:
    """`pinned_request`, then at most `limit` bytes of the body; the response is closed."""
    response = await pinned_request(
        client, method, url, policy, headers=headers, content=content, timeout=timeout
    )
    try:
        body = await read_limited(response, limit)
    finally:
        await response.aclose()
    return response, body


def redirect_target(response: httpx.Response, url: httpx.URL) -> httpx.URL | None:
    """Where a 3xx response points (absolute), or None if it is not a redirect."""
    location = response.headers.get("location")
    if not response.is_redirect or not location:
        return None
    return url.join(location)
