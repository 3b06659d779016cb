"""batch-import: keyed upserts in chunks with progress, invalid items reported (or the
whole import refused when strict), NDJSON over HTTP, CSV files, a user sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from job_helpers import drain_until, job_of
from taskflare import App, Backoff, InvalidPayload, JobStatus, contrib
from taskflare.contrib import ImportSettings

from .conftest import local_services

NO_WAIT = Backoff(base=0, cap=0, jitter=False)


async def finished(app: App, job_id: str) -> Any:
    async def done() -> Any:
        job = await job_of(app, job_id)
        return job if job.status.finished else None

    return await drain_until(app, done, timeout=30, what=f"job {job_id} to finish")


async def keys_of(app: App, namespace: str) -> list[str]:
    return [d.key for d in (await app.namespace(namespace).list(limit=1000)).items]


async def test_items_are_upserted_by_key_in_chunks_with_progress(contrib_app: App) -> None:
    contrib_app.use(contrib.imports(ImportSettings(chunk_size=10)))
    items = [{"sku": f"sku-{i:02d}", "price": i} for i in range(25)]
    job = await contrib_app.enqueue(
        "batch-import", {"items": items, "namespace": "products", "key": "sku"}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result == {
        "namespace": "products",
        "imported": 25,
        "invalidCount": 0,
        "invalid": [],
    }
    assert done.progress == 1.0
    assert await keys_of(contrib_app, "products") == [f"sku-{i:02d}" for i in range(25)]
    # The same import again (a retry, a re-run) overwrites: nothing is duplicated.
    items[0]["price"] = 99
    again = await contrib_app.enqueue(
        "batch-import", {"items": items, "namespace": "products", "key": "sku"}
    )
    await finished(contrib_app, again.id)
    assert await contrib_app.namespace("products").count() == 25
    first = await contrib_app.namespace("products").get("sku-00")
    assert first is not None and first.value == {"sku": "sku-00", "price": 99}


async def test_a_retried_import_does_not_duplicate_items_without_a_key(contrib_app: App) -> None:
    calls: list[int] = []

    async def flaky_sink(namespace: str, records: list[tuple[str, Any]]) -> None:
        calls.append(len(records))
        await contrib_app.namespace(namespace).put_many(records)
        if len(calls) == 2:
            raise ConnectionError("the database went away after the second chunk")

    contrib_app.use(contrib.imports(ImportSettings(chunk_size=4), sink=flaky_sink, retry=NO_WAIT))
    job = await contrib_app.enqueue(
        "batch-import", {"items": [{"n": i} for i in range(10)], "namespace": "rows"}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert await contrib_app.namespace("rows").count() == 10


async def test_invalid_items_are_reported_with_index_and_reason(contrib_app: App) -> None:
    class Product(BaseModel):
        sku: str
        price: float

    contrib_app.use(contrib.imports(models={"products": Product}))
    items: list[Any] = [
        {"sku": "a", "price": 1},
        "not an object",
        {"price": 2},
        {"sku": "d", "price": "cheap"},
        {"sku": "e", "price": 5},
        {"sku": "f", "price": "nan"},  # the model makes a float NaN of it: JSON has none
    ]
    job = await contrib_app.enqueue(
        "batch-import", {"items": items, "namespace": "products", "key": "sku"}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result["imported"] == 2 and done.result["invalidCount"] == 4
    assert [p["index"] for p in done.result["invalid"]] == [1, 2, 3, 5]
    assert "object" in done.result["invalid"][0]["reason"]
    assert "sku" in done.result["invalid"][1]["reason"]
    assert "value.price is NaN" in done.result["invalid"][3]["reason"]
    assert await keys_of(contrib_app, "products") == ["a", "e"]


async def test_a_strict_import_with_an_invalid_item_writes_nothing(contrib_app: App) -> None:
    contrib_app.use(contrib.imports())
    job = await contrib_app.enqueue(
        "batch-import",
        {
            "items": [{"id": 1}, {"id": 2}, {"no": "id"}],
            "namespace": "s",
            "key": "id",
            "strict": True,
        },
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "item 2" in (done.error or "") and await contrib_app.namespace("s").count() == 0


async def test_ndjson_over_http_and_csv_from_an_allowed_folder(
    contrib_app: App, tmp_path: Path
) -> None:
    lines = b"\n".join(b'{"id": %d, "name": "n%d"}' % (i, i) for i in range(30)) + b"\nnot json\n"

    async def feed(request: Any) -> Response:
        return Response(lines, media_type="application/x-ndjson")

    folder = tmp_path / "imports"
    folder.mkdir()
    (folder / "people.csv").write_text("email,name\na@x.io,Ann\nb@x.io,Bob\n,NoEmail\n")
    (tmp_path / "secret.csv").write_text("email\nroot@x.io\n")
    contrib_app.use(
        contrib.imports(
            ImportSettings(
                chunk_size=7, allowed_dirs=[str(folder)], allowed_networks=["127.0.0.1/32"]
            )
        )
    )
    with local_services.serve(Starlette(routes=[Route("/feed.ndjson", feed)])) as base:
        job = await contrib_app.enqueue(
            "batch-import", {"url": f"{base}/feed.ndjson", "namespace": "feed", "key": "id"}
        )
        done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result["imported"] == 30 and done.result["invalid"][0]["index"] == 30
    csv_job = await contrib_app.enqueue(
        "batch-import",
        {"file": str(folder / "people.csv"), "namespace": "people", "key": "email"},
    )
    done = await finished(contrib_app, csv_job.id)
    assert done.result["imported"] == 2 and done.result["invalidCount"] == 1
    found = await contrib_app.namespace("people").get("b@x.io")
    assert found is not None and found.value == {"email": "b@x.io", "name": "Bob"}
    outside = await contrib_app.enqueue(
        "batch-import", {"file": str(tmp_path / "secret.csv"), "namespace": "x"}
    )
    done = await finished(contrib_app, outside.id)
    assert done.status is JobStatus.FAILED and "allowed folders" in (done.error or "")


async def test_inline_items_with_the_same_key_are_refused_at_enqueue(contrib_app: App) -> None:
    """Two items with one `key` were both written under it, the later overwriting the
    earlier, and both counted as imported. Refused at enqueue, naming the field, the key
    and both items (`7` and `"7"` are one key: keys are stored as text); nothing is stored.
    Items without a usable key are left to the import to report, as before."""
    contrib_app.use(contrib.imports(retry=NO_WAIT))
    items = [{"sku": "A-1", "price": 1}, {"sku": 7}, "not an object", {}, {"sku": "A-1"}]
    with pytest.raises(InvalidPayload) as refused:
        await contrib_app.enqueue("batch-import", {"items": items, "namespace": "p", "key": "sku"})
    message = str(refused.value)
    assert "items: " in message and "'A-1' is given twice (items 0 and 4)" in message
    assert "same 'sku'" in message
    with pytest.raises(InvalidPayload, match=r"items: .*'7' is given twice \(items 0 and 1\)"):
        await contrib_app.enqueue(
            "batch-import", {"items": [{"id": 7}, {"id": "7"}], "namespace": "p", "key": "id"}
        )
    assert (await contrib_app.list_jobs()).jobs == []
    # Without `key` each item has a key of its own (job id and position): alike is fine.
    alike = await contrib_app.enqueue("batch-import", {"items": [{"a": 1}] * 2, "namespace": "p"})
    done = await finished(contrib_app, alike.id)
    assert done.status is JobStatus.COMPLETED and done.result["imported"] == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"items": []}, "namespace"),
        ({"namespace": "bad ns", "items": []}, "namespace"),
        ({"namespace": "n"}, "exactly one of items, url or file"),
        ({"namespace": "n", "items": [], "url": "https://example.com/a"}, "exactly one"),
        ({"namespace": "n", "items": "nope"}, "items"),
        ({"namespace": "n", "url": "file:///etc/passwd"}, "url"),
    ],
)
async def test_a_bad_payload_is_refused_at_enqueue_naming_the_field(
    contrib_app: App, payload: dict[str, Any], field: str
) -> None:
    contrib_app.use(contrib.imports())
    with pytest.raises(InvalidPayload, match=field):
        await contrib_app.enqueue("batch-import", payload)


async def test_a_url_source_too_large_or_missing_fails_and_a_503_is_retried(
    contrib_app: App,
) -> None:
    calls: dict[str, int] = {}

    async def feed(request: Any) -> Response:
        name = request.path_params["name"]
        calls[name] = calls.get(name, 0) + 1
        if name == "busy.ndjson" and calls[name] == 1:
            return Response("busy", status_code=503)
        if name == "missing.ndjson":
            return Response("no", status_code=404)
        return Response(b'{"id": 1}\n' * 200, media_type="application/x-ndjson")

    contrib_app.use(
        contrib.imports(
            ImportSettings(max_source_bytes=1000, allowed_networks=["127.0.0.1/32"]),
            retry=NO_WAIT,
        )
    )
    with local_services.serve(Starlette(routes=[Route("/{name}", feed)])) as base:
        results = {}
        for name in ("big.ndjson", "missing.ndjson", "busy.ndjson"):
            job = await contrib_app.enqueue(
                "batch-import", {"url": f"{base}/{name}", "namespace": "n", "key": "id"}
            )
            results[name] = await finished(contrib_app, job.id)
    assert results["big.ndjson"].status is JobStatus.FAILED
    assert "larger than 1000 bytes" in (results["big.ndjson"].error or "")
    assert results["missing.ndjson"].status is JobStatus.FAILED
    assert results["missing.ndjson"].attempts == 1
    assert results["busy.ndjson"].status is JobStatus.FAILED  # 2000 bytes: too large too
    assert results["busy.ndjson"].attempts == 2
