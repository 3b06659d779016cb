"""Database URLs: resolution, SQLite paths, redaction, and refusals."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from taskflare import App, InvalidDatabaseUrl
from taskflare.backends import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    open_backend,
    redact_url,
    resolve_database_url,
    sqlite_path,
)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///taskflare.db", "taskflare.db"),
        ("sqlite:///data/jobs.db", "data/jobs.db"),
        ("sqlite:////var/lib/tf.db", "/var/lib/tf.db"),
        ("sqlite:///jobs.db?synchronous=normal", "jobs.db"),
    ],
)
def test_sqlite_path(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize(
    "url", ["sqlite://host/file.db", "sqlite:///", "sqlite://", "sqlite:///?x=1"]
)
def test_bad_sqlite_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl):
        sqlite_path(url)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u@h/db",
        "taskflare.db",
        "",
        "http://example.com/x",
        "sqlite:///x.db?synchronous=fast",
    ],
)
def test_open_backend_refuses_unsupported_urls(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl):
        open_backend(url)


def test_unsupported_url_error_does_not_leak_the_password() -> None:
    with pytest.raises(InvalidDatabaseUrl) as info:
        open_backend("mysql://user:hunter2@host/db")
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:///taskflare.db", "sqlite:///taskflare.db"),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_app_repr_redacts_the_password() -> None:
    app = App("postgresql://user:secret@host/db")
    assert "secret" not in repr(app)


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert resolve_database_url(None) == DEFAULT_DATABASE_URL == "sqlite:///taskflare.db"
    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:///from-env.db")
    assert resolve_database_url(None) == "sqlite:///from-env.db"
    assert resolve_database_url("sqlite:///given.db") == "sqlite:///given.db"
    assert App().database_url == "sqlite:///from-env.db"
    assert App("sqlite:///given.db").database_url == "sqlite:///given.db"


def test_pgbouncer_and_listen_url_options() -> None:
    from urllib.parse import quote

    from taskflare.backends.postgres.backend import parse_postgres_url

    listen = quote("postgresql://app:listen-secret@db:5432/shop", safe="")
    url = f"postgresql://app:pw@bouncer:6432/shop?pgbouncer=1&listen_url={listen}&schema=s"
    settings = parse_postgres_url(url)
    assert settings.pgbouncer and settings.schema == "s"
    assert settings.listen_conninfo is not None and "host=db" in settings.listen_conninfo
    assert "pgbouncer" not in settings.conninfo and "listen" not in settings.conninfo
    assert set(settings.secrets) == {"pw", "listen-secret"}
    shown = redact_url(url)
    assert "listen-secret" not in shown and "pw@" not in shown and "listen_url=" in shown
    assert not parse_postgres_url("postgresql://h/db?pgbouncer=0").pgbouncer
    assert not parse_postgres_url("postgresql://h/db").pgbouncer
    with pytest.raises(InvalidDatabaseUrl, match="pgbouncer='maybe'"):
        parse_postgres_url("postgresql://h/db?pgbouncer=maybe")
    with pytest.raises(InvalidDatabaseUrl, match="listen_url"):
        parse_postgres_url("postgresql://h/db?listen_url=db:5432")


_DIRECT = "postgresql://postgres:sekrit@127.0.0.1:5432/test"


@pytest.mark.parametrize(
    "url",
    [
        # Options glued onto a URL without '?': they end up in the path.
        f"postgresql://127.0.0.1/test&pgbouncer=1&listen_url={quote(_DIRECT, safe='')}",
        f"{_DIRECT}&pgbouncer=1&listen_url={quote(_DIRECT, safe='')}",
        # Encoded twice, inside the path.
        f"postgresql://h/test&listen_url={quote(quote(_DIRECT, safe=''), safe='')}",
        # password= in the path, raw and encoded; in a conninfo string.
        "postgresql://h/db&password=sekrit&x=1",
        "postgresql://h/db%3Fpassword%3Dsekrit%26x%3D1",
        "host=h password=sekrit dbname=x",
        # An '@' inside the password, raw and encoded; a URL urlsplit refuses.
        "postgresql://u:sekrit@x@h/db",
        "postgresql://u:sekrit%40x@h/db",
        "postgresql://u:sekrit@[bad/db",
        f"postgresql://h/db?listen_url={quote(_DIRECT, safe='')}",
    ],
)
def test_a_password_anywhere_in_a_url_is_never_shown(url: str) -> None:
    shown = redact_url(url)
    assert "sekrit" not in shown, shown
    assert "***" in shown


def test_a_url_libpq_refuses_says_why_without_the_password() -> None:
    from taskflare.backends.postgres.backend import parse_postgres_url

    with pytest.raises(InvalidDatabaseUrl) as info:
        parse_postgres_url("postgresql://u:sekrit@h/test?shema=nu_x")
    message = str(info.value)
    assert 'invalid URI query parameter: "shema"' in message and "schema" in message
    assert "sekrit" not in message
    with pytest.raises(InvalidDatabaseUrl, match=r'"pool_size".*pool_max_size'):
        parse_postgres_url("postgresql://h/test?pool_size=3")


# URLs Python's URL parser refuses with a bare ValueError (an unclosed '[', a bracketed
# host that is no IP address, a port out of range): they reached users as a traceback.
UNPARSABLE = [
    "postgresql://u:Qx7Ka@[::1/test",
    "postgresql://u:Qx7Ka@[zz]:5432/test",
    "postgresql://u:Qx7Ka[Wv3Zb]@127.0.0.1/test",  # Python's reason would quote Wv3Zb
    "sqlite://[x/taskflare.db",
]


@pytest.mark.parametrize("url", UNPARSABLE)
async def test_a_url_the_parser_refuses_is_a_typed_error_without_the_password(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrl) as opened:
        open_backend(url)
    app = App(url)
    try:
        with pytest.raises(InvalidDatabaseUrl) as used:
            await app.stats()
    finally:
        await app.close()
    for raised in (opened, used):
        assert "is not a URL" in str(raised.value) and "***" in str(raised.value)
        assert "Qx7Ka" not in str(raised.value) and "Wv3Zb" not in str(raised.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:////var/lib/tf.db", "sqlite:////var/lib/tf.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql://u:pw@db/app", "postgresql://u:***@db/app"),
        ("sqlite://host/x.db", "sqlite://host/x.db"),  # refused elsewhere, shown as given
    ],
)
def test_database_shown_adds_the_file_only_to_a_relative_sqlite_path(url: str, shown: str) -> None:
    from taskflare.backends.url import database_shown

    assert database_shown(url) == shown


def test_database_shown_names_a_relative_sqlite_file_absolutely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskflare.backends.url import database_shown

    monkeypatch.chdir(tmp_path)
    assert database_shown("sqlite:///data/jobs.db?synchronous=normal") == (
        f"sqlite:///data/jobs.db?synchronous=normal (file {tmp_path / 'data' / 'jobs.db'})"
    )
