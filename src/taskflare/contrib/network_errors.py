"""What a built-in job type says when a server cannot be reached: the host it tried (and
the port, when not the scheme's), and what went wrong (no answer in time, a name that
does not resolve, a refused connection, a failed TLS handshake), as a `RuntimeError`
that the job's backoff retries. Never the URL's user, password, path or query, which
may hold credentials (`https://user:key@host/v1?api-key=...`)."""

from __future__ import annotations

import socket
import ssl

import httpx

from ..backends.url import hide_credentials


def endpoint_name(url: httpx.URL | str) -> str:
    """`host`, or `host:port` when the port is not the scheme's default (`[::1]:8080`
    for an IPv6 address): where a request went, without anything secret."""
    url = httpx.URL(url)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return host if url.port is None else f"{host}:{url.port}"


def network_failure(
    exc: BaseException, url: httpx.URL | str, timeout: float, what: str = ""
) -> RuntimeError:
    """`exc` (an httpx transport error or timeout, or an `OSError`) as a `RuntimeError`
    naming `what` and the endpoint of `url`: `the AI endpoint api.example.com did not
    resolve (Name or service not known)`, `cannot reach 127.0.0.1:9: connection
    refused`, `... did not answer within 10s`, `cannot reach ...: TLS handshake failed
    (CERTIFICATE_VERIFY_FAILED ...)`. `timeout` [s] is the one the request had."""
    subject = f"{what} {endpoint_name(url)}".strip()
    if isinstance(exc, httpx.TimeoutException):
        return RuntimeError(f"{subject} did not answer within {timeout:g}s")
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, socket.gaierror):
            return RuntimeError(f"{subject} did not resolve ({cause.strerror or cause})")
        if isinstance(cause, ssl.SSLError):
            return RuntimeError(f"cannot reach {subject}: TLS handshake failed ({_tls(cause)})")
        if isinstance(cause, ConnectionRefusedError):
            return RuntimeError(f"cannot reach {subject}: connection refused")
    if type(exc) is OSError and exc.args:  # ours (`resolve`), naming the host already
        return RuntimeError(hide_credentials(str(exc)))
    return RuntimeError(f"cannot reach {subject}: {type(exc).__name__}")


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it was raised from or during, outermost first (at most 10)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 10 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _tls(error: ssl.SSLError) -> str:
    """The TLS failure in a few words: the reason code, and a certificate's problem."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"{error.reason}: {error.verify_message}"
    return str(error.reason or type(error).__name__)
