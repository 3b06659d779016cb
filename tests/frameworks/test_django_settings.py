"""What the Django integration derives without a server: taskflare's URL from Django's
DATABASES, and the command lines `manage.py taskflare` runs."""

from __future__ import annotations

import psycopg
import pytest

from taskflare.backends.postgres.backend import parse_postgres_url
from taskflare.integrations.commandline import with_app
from taskflare.integrations.django.conf import postgres_url


def test_url_from_django_database_keeps_credentials_options_and_schema() -> None:
    url = postgres_url(
        {
            "NAME": "shop db",
            "USER": "shop",
            "PASSWORD": "p@ss:word/1",
            "HOST": "db.internal",
            "PORT": 6432,
            "OPTIONS": {"sslmode": "require", "isolation_level": 1, "options": "-c a=b"},
        },
        "jobs",
    )
    settings = parse_postgres_url(url)
    params = psycopg.conninfo.conninfo_to_dict(settings.conninfo)
    assert settings.schema == "jobs"
    assert params["dbname"] == "shop db" and params["user"] == "shop"
    assert params["password"] == "p@ss:word/1"
    assert (params["host"], params["port"]) == ("db.internal", "6432")
    assert params["sslmode"] == "require" and params["options"] == "-c a=b"
    assert "isolation_level" not in params  # Django's own option, not libpq's


def test_url_from_django_database_on_a_unix_socket() -> None:
    url = postgres_url({"NAME": "shop", "HOST": "/var/run/postgresql"}, None)
    params = psycopg.conninfo.conninfo_to_dict(parse_postgres_url(url).conninfo)
    assert params["host"] == "/var/run/postgresql" and params["dbname"] == "shop"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["worker", "-c", "4"], ["worker", "A", "-c", "4"]),
        (["worker", "health", "--max-age", "60"], ["worker", "health", "A", "--max-age", "60"]),
        (["--debug", "serve", "--port", "0"], ["--debug", "serve", "A", "--port", "0"]),
        (["cron", "list"], ["cron", "list", "A"]),
        (["jobs", "list", "--json"], ["jobs", "list", "--json"]),
        (["migrate"], ["migrate"]),
        (["--help"], ["--help"]),
        (["no-such-command"], ["no-such-command"]),
    ],
)
def test_the_app_goes_only_to_commands_that_take_one(args: list[str], expected: list[str]) -> None:
    assert with_app(args, "A") == expected


def test_same_database_compares_host_port_and_name_the_url_states() -> None:
    from conftest import PG_URL, REQUIRE_PG, postgres_skip_reason
    from taskflare.integrations.django.transaction import same_database

    reason = postgres_skip_reason()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here (TASKFLARE_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(f"skipped: no PostgreSQL: {reason}")
    with psycopg.connect(PG_URL) as conn:
        info = conn.info
        here = f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"
        assert same_database(f"{here}?schema=jobs", conn)
        assert same_database(f"postgresql:///{info.dbname}", conn)  # host and port unsaid
        assert not same_database(f"postgresql://{info.host}:{info.port}/other_db", conn)
        assert not same_database(f"postgresql://{info.host}:{info.port + 1}/{info.dbname}", conn)
        assert not same_database(here, object())  # not a psycopg 3 connection
