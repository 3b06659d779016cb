"""Fixtures for the built-in job types: the local services of examples/local_services.py
(a real SMTP server, a webhook receiver, a website, an OpenAI-compatible API)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from taskflare import App

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import local_services  # noqa: E402


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (certificate file, key file)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture
def smtp() -> Iterator[tuple[str, local_services.SmtpInbox]]:
    """A plain local SMTP server: (smtp:// URL, inbox)."""
    with local_services.smtp_server() as server:
        yield server


@pytest.fixture
def received() -> Iterator[tuple[str, local_services.Received]]:
    """A local webhook receiver: (base URL, what it received)."""
    seen = local_services.Received()
    with local_services.serve(local_services.webhook_receiver(seen, slow_seconds=0.5)) as url:
        yield url, seen


@pytest.fixture
def ai() -> Iterator[tuple[str, local_services.AiCalls]]:
    """A local OpenAI-compatible API: (base URL ending in /v1, its calls)."""
    calls = local_services.AiCalls(api_key="sk-local-test-key")
    with local_services.serve(local_services.openai_compatible(calls)) as url:
        yield f"{url}/v1", calls


@pytest.fixture
async def contrib_app(database_url: str) -> AsyncIterator[App]:
    """An App on a fresh database (both backends), closed after the test."""
    application = App(database_url)
    yield application
    await application.close()
