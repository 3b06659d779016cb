"""Schemathesis against `/openapi.json` of a real server (SQLite): no 5xx, and every
response matches the schema (declared status, content type and body).

Bounded: at most 30 generated requests per operation (with the example phase, no
shrinking database), so the whole file runs in well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from taskflare.web import Tokens, create_api

from .server import WRITE_TOKEN, LiveServer, Recorder, build_app, live_server

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture
def served(sqlite_url: str) -> Iterator[LiveServer]:
    with live_server(sqlite_url) as server:
        yield server


def test_the_served_schema_is_the_one_tested(served: LiveServer) -> None:
    with served.client() as client:
        assert client.get("/openapi.json").json() == OPENAPI


# The operations are enumerated at collection time from the same app definition the
# server runs (nothing connects to a database to build it); each test then sends its
# generated requests to a real server, and the test above checks the two schemas agree.
OPENAPI = create_api(build_app("sqlite:///unused.db", Recorder()), Tokens(None, None)).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(served: LiveServer, case: schemathesis.Case) -> None:
    # The schema declares the bearer scheme, so the case comes with a generated token:
    # replace it with the real one (the refusals are tested in test_http_security.py).
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {WRITE_TOKEN}"}
    case.call_and_validate(base_url=served.url, checks=CHECKS, timeout=10)
