"""A PostgreSQL password never shows, however the URL is malformed: a raw '@', '/', '?' or
'#' inside it (which ends it early, so libpq would name its tail as the host), percent-
encoded, inside `listen_url`, as `password=`, or in PGPASSWORD. Checked in the library's
exception text and logs, in the HTTP API's answers, and in the command line's output
(worker, stats, migrate, queues)."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from taskflare import App, InvalidDatabaseUrl, TaskflareError
from taskflare.web.api import create_api
from taskflare.web.common import Tokens

from .cli_run import one_line_error, tf_many, write_cli_app

# Each secret is made of parts no message has by chance; a part after a stray '@' is
# what libpq would show as a host name.
HOST = "127.0.0.1:5432/test"
MALFORMED = {
    "raw @": f"postgresql://u:Qx7Ka@Wv3Zb@{HOST}",
    "raw @ twice": f"postgresql://u:Qx7Ka@Wv3Zb@Jm5Yc@{HOST}",
    "raw /": f"postgresql://u:Qx7Ka/Wv3Zb@{HOST}",
    "raw ?": f"postgresql://u:Qx7Ka?Wv3Zb@{HOST}",
    "raw #": f"postgresql://u:Qx7Ka#Wv3Zb@{HOST}",
    "raw @ in listen_url": (
        f"postgresql://postgres@{HOST}?listen_url="
        + quote(f"postgresql://u:Qx7Ka@Wv3Zb@{HOST}", safe="")
    ),
}
PARTS = ("Qx7Ka", "Wv3Zb", "Jm5Yc")


def assert_hidden(text: str) -> None:
    for part in PARTS:
        assert part not in text, text


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_a_malformed_url_is_refused_without_any_part_of_its_password(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = App(url)
    try:
        assert_hidden(repr(app))
        with pytest.raises(InvalidDatabaseUrl) as raised:
            await app.stats()
    finally:
        await app.close()
    message = str(raised.value)
    assert "percent-encode it" in message and "***" in message
    assert_hidden(message)
    assert_hidden(caplog.text)


async def test_a_libpq_error_never_shows_the_password_or_pgpassword(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PGPASSWORD", "Jm5Yc")
    encoded = quote("Qx7Ka@Wv3Zb", safe="")
    for url in (
        f"postgresql://no_such_role:{encoded}@{HOST}",  # well-formed: percent-encoded
        f"postgresql://no_such_role@{HOST}?password={encoded}",
        f"postgresql://no_such_role@{HOST}",  # the password comes from PGPASSWORD
    ):
        app = App(url)
        try:
            with pytest.raises(TaskflareError) as raised:
                await app.stats()
        finally:
            await app.close()
        assert "no_such_role" in str(raised.value)
        assert_hidden(str(raised.value))
    assert_hidden(caplog.text)


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_the_http_api_answers_without_any_part_of_a_malformed_password(url: str) -> None:
    for path, answer in await api_answers(url):
        assert answer.status_code >= 500, (path, answer.text)
        assert_hidden(answer.text)


@pytest.mark.timeout(600)  # some fifteen taskflare processes, on a loaded machine
def test_no_command_shows_any_part_of_a_malformed_password(tmp_path: Path) -> None:
    spec = write_cli_app(tmp_path)  # its App takes the URL from the environment
    runs: list[tuple[list[list[str]], str | None]] = [
        (
            [
                *(["stats", "--database-url", url] for url in MALFORMED.values()),
                *(["migrate", url] for url in MALFORMED.values()),
                ["queues", "list", "--database-url", MALFORMED["raw /"]],
            ],
            None,
        ),
        *(([["worker", spec]], MALFORMED[name]) for name in ("raw @", "raw @ in listen_url")),
    ]
    for commands, url in runs:
        results = tf_many(commands, url=url, timeout=500, PGPASSWORD="Jm5Yc")
        for command, result in zip(commands, results, strict=True):
            assert_hidden(result.stdout + result.stderr)
            line = one_line_error(result)
            assert "percent-encode it" in line and "***" in line, (command, line)


# URLs Python's URL parser refuses (a bare ValueError, shown as a traceback before).
UNPARSABLE = {
    "unclosed [": "postgresql://u:Qx7Ka@[::1/test",
    "bracketed name": "postgresql://u:Qx7Ka@[db]:5432/test",
    "[ ] in the password": f"postgresql://u:Qx7Ka[Wv3Zb]@{HOST}",
}


@pytest.mark.timeout(600)
def test_a_url_the_parser_refuses_is_one_line_from_every_command(tmp_path: Path) -> None:
    spec = write_cli_app(tmp_path)
    for url in UNPARSABLE.values():
        commands = [
            ["migrate", url],
            ["queues", "list", "--database-url", url],
            ["jobs", "list", "--database-url", url],
            ["worker", spec],  # its App takes the URL from the environment
        ]
        for command, result in zip(commands, tf_many(commands, url=url, timeout=500), strict=True):
            assert_hidden(result.stdout + result.stderr)
            line = one_line_error(result)
            assert "is not a URL" in line and "***" in line, (command, line)


@pytest.mark.parametrize("url", list(UNPARSABLE.values()), ids=list(UNPARSABLE))
async def test_the_http_api_answers_503_for_a_url_the_parser_refuses(url: str) -> None:
    for path, answer in await api_answers(url):
        assert answer.status_code == 503, (path, answer.text)
        assert_hidden(answer.text)


async def api_answers(url: str) -> list[tuple[str, httpx.Response]]:
    """What the HTTP API of an app on `url` answers to a GET of each read path."""
    app = App(url)
    transport = httpx.ASGITransport(app=create_api(app, Tokens(None, None)))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                (path, await client.get(path))
                for path in ("/stats", "/queues", "/jobs", "/health", "/metrics")
            ]
    finally:
        await app.close()
