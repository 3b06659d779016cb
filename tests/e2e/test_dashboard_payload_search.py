"""The dashboard's payload search finds the text as the user typed it, on both backends:
inside JSON strings whose stored form escapes it (a quote, a backslash, non-ASCII stored
as `\\u` escapes), with `%` and `_` meaning themselves. (A newline or a tab cannot be in
a query string, which the server refuses with control characters: the backends' own
tests search for those.)"""

from __future__ import annotations

import asyncio
import re

from taskflare import App
from taskflare.backends.base import EnqueueParams, NewMessage
from taskflare.ids import uuid7

from .server import LiveServer
from .test_dashboard_pages import signed_in

PAYLOADS = {
    "quote": {"note": 'she said "hi" twice'},
    "backslash": {"path": "C:\\temp\\report.txt"},
    "unicode": {"city": "Zürich · 東京"},
    "wildcards": {"promo": "50%_off"},
    "key": {'odd "key"': 1},
    "plain": {"note": "nothing special here"},
}


def _found(client: object, text: str) -> set[str]:
    page = client.get("/dashboard/jobs", params={"text": text})  # type: ignore[attr-defined]
    assert page.status_code == 200, page.text[:300]
    return set(re.findall(r"/dashboard/jobs/([0-9a-f-]{36})", page.text))


def test_payload_search_finds_the_text_as_typed(live: LiveServer) -> None:
    ids: dict[str, str] = {}
    with live.client() as api:
        for name, payload in PAYLOADS.items():
            made = api.post("/jobs", json={"type": "charge", "payload": payload})
            assert made.status_code in (200, 201, 202), made.text
            ids[name] = made.json()["jobId"]

    async def store_escaped() -> str:
        # Another producer's JSON, non-ASCII written as escapes: `"Café"` stored as
        # `"Caf\u00e9"`.
        app = App(live.database_url)
        try:
            message = NewMessage(
                uuid7(), "billing", b'{"shop": "Caf\\u00e9 \\"Noir\\""}', "json", type="charge"
            )
            await (await app.backend()).message_enqueue_many(EnqueueParams([message]))
            return message.id
        finally:
            await app.close()

    ids["escaped"] = asyncio.run(store_escaped())

    with signed_in(live) as client:
        assert _found(client, 'said "hi"') == {ids["quote"]}
        assert _found(client, "C:\\temp\\report") == {ids["backslash"]}
        assert _found(client, "Zürich · 東京") == {ids["unicode"]}
        assert _found(client, 'Café "Noir"') == {ids["escaped"]}
        assert _found(client, 'odd "key"') == {ids["key"]}
        # LIKE's wildcards are the characters themselves.
        assert _found(client, "%") == {ids["wildcards"]}
        assert _found(client, "50%_") == {ids["wildcards"]}
        assert _found(client, "0_o") == set()
        # What the stored text holds still matches (keys, numbers, the text as stored).
        assert _found(client, '"promo"') == {ids["wildcards"]}
        assert _found(client, "special here") == {ids["plain"]}
        assert _found(client, "\\u00e9") == {ids["escaped"]}
        # The count a bulk action shows agrees with the page.
        count = client.get("/dashboard/jobs/count", params={"text": 'said "hi"'}).json()
        assert count["count"] == 1
