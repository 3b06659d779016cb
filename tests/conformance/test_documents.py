"""DocumentStore: JSON documents by (namespace, key), on both backends."""

from __future__ import annotations

import asyncio

import orjson

from taskflare.backends import Backend
from taskflare.backends.base import (
    DocInsertParams,
    DocKeyParams,
    DocListParams,
    DocNamespaceParams,
    DocPutManyParams,
    JobBatchCreateParams,
    JobBatchGetParams,
    JobBatchTotalParams,
    NamespaceCount,
)

from .conftest import OpenBackend


def doc(value: object) -> bytes:
    return orjson.dumps(value)


async def test_put_many_inserts_then_replaces_and_get_reads_value_and_time(
    backend: Backend,
) -> None:
    await backend.doc_put_many(DocPutManyParams("p", [("a", doc({"n": 1})), ("b", doc([1, 2]))]))
    first = await backend.doc_get(DocKeyParams("p", "a"))
    assert first is not None and orjson.loads(first.value) == {"n": 1}
    await backend.doc_put_many(DocPutManyParams("p", [("a", doc({"n": 2}))]))
    second = await backend.doc_get(DocKeyParams("p", "a"))
    assert second is not None and orjson.loads(second.value) == {"n": 2}
    assert second.updated_at >= first.updated_at
    assert await backend.doc_get(DocKeyParams("p", "missing")) is None
    assert await backend.doc_get(DocKeyParams("other", "a")) is None


async def test_a_key_given_twice_in_one_put_keeps_its_last_value(backend: Backend) -> None:
    await backend.doc_put_many(DocPutManyParams("p", [("k", doc(1)), ("k", doc(2))]))
    found = await backend.doc_get(DocKeyParams("p", "k"))
    assert found is not None and orjson.loads(found.value) == 2
    await backend.doc_put_many(DocPutManyParams("p", []))  # nothing to do, no error


async def test_values_of_every_json_kind_round_trip(backend: Backend) -> None:
    values = [None, True, 0, -1.5, "text é ✓", [], {}, {"nested": {"list": [1, "x", None]}}]
    await backend.doc_put_many(
        DocPutManyParams("kinds", [(str(i), doc(v)) for i, v in enumerate(values)])
    )
    for i, value in enumerate(values):
        found = await backend.doc_get(DocKeyParams("kinds", str(i)))
        assert found is not None and orjson.loads(found.value) == value


async def test_list_is_in_code_point_key_order_with_an_after_cursor_and_prefix(
    backend: Backend,
) -> None:
    keys = ["b", "a", "B", "a/2", "a/10", "é", "c"]
    await backend.doc_put_many(DocPutManyParams("ns", [(k, doc(k)) for k in keys]))
    await backend.doc_put_many(DocPutManyParams("other", [("a", doc(0))]))
    listed = [d.key for d in await backend.doc_list(DocListParams("ns", limit=100))]
    assert listed == sorted(keys)  # code point order on both backends: "B" < "a" < "é"
    page = await backend.doc_list(DocListParams("ns", limit=2, after="a"))
    assert [d.key for d in page] == ["a/10", "a/2"]
    prefixed = await backend.doc_list(DocListParams("ns", limit=10, prefix="a/"))
    assert [d.key for d in prefixed] == ["a/10", "a/2"]
    assert await backend.doc_list(DocListParams("empty")) == []


async def test_delete_reports_whether_the_document_existed(backend: Backend) -> None:
    await backend.doc_put_many(DocPutManyParams("p", [("a", doc(1))]))
    assert await backend.doc_delete(DocKeyParams("p", "a")) is True
    assert await backend.doc_delete(DocKeyParams("p", "a")) is False
    assert await backend.doc_get(DocKeyParams("p", "a")) is None


async def test_count_and_namespaces(backend: Backend) -> None:
    assert await backend.doc_namespaces() == []
    await backend.doc_put_many(DocPutManyParams("b", [("1", doc(1)), ("2", doc(2))]))
    await backend.doc_put_many(DocPutManyParams("a", [("1", doc(1))]))
    assert await backend.doc_count(DocNamespaceParams("b")) == 2
    assert await backend.doc_count(DocNamespaceParams("none")) == 0
    assert await backend.doc_namespaces() == [NamespaceCount("a", 1), NamespaceCount("b", 2)]


async def test_insert_stores_only_an_absent_key(backend: Backend) -> None:
    assert await backend.doc_insert(DocInsertParams("f", "u", doc({"by": 1}))) is True
    assert await backend.doc_insert(DocInsertParams("f", "u", doc({"by": 2}))) is False
    found = await backend.doc_get(DocKeyParams("f", "u"))
    assert found is not None and orjson.loads(found.value) == {"by": 1}


async def test_insert_with_a_limit_stops_at_the_limit(backend: Backend) -> None:
    results = [
        await backend.doc_insert(DocInsertParams("f", f"k{i}", doc(i), max_count=3))
        for i in range(5)
    ]
    assert results == [True, True, True, False, False]
    assert await backend.doc_count(DocNamespaceParams("f")) == 3


async def test_concurrent_limited_inserts_from_many_connections_never_pass_the_limit(
    backend: Backend, open_more: OpenBackend
) -> None:
    others = [await open_more() for _ in range(3)]
    everyone = [backend, *others]

    async def insert(i: int) -> bool:
        target = everyone[i % len(everyone)]
        return await target.doc_insert(DocInsertParams("race", f"k{i}", doc(i), max_count=10))

    results = await asyncio.gather(*(insert(i) for i in range(40)))
    assert sum(results) == 10
    assert await backend.doc_count(DocNamespaceParams("race")) == 10


async def test_a_batch_total_only_rises(backend: Backend) -> None:
    await backend.job_batch_create(JobBatchCreateParams("b1", "crawl-page", 1))
    await backend.job_batch_raise_total(JobBatchTotalParams("b1", 5))
    await backend.job_batch_raise_total(JobBatchTotalParams("b1", 3))
    counts = await backend.job_batch_counts(JobBatchGetParams("b1"))
    assert counts is not None and counts.total == 5
