"""`app.namespace(...)`: the document store from Python, on both backends."""

from __future__ import annotations

import pytest

from taskflare import App, InvalidDocument


async def test_put_get_replace_delete(app: App) -> None:
    products = app.namespace("products")
    await products.put("sku-1", {"name": "Lamp", "price": 12.5})
    found = await products.get("sku-1")
    assert found is not None and found.value == {"name": "Lamp", "price": 12.5}
    assert found.to_dict()["updatedAt"].endswith("Z")
    await products.put("sku-1", {"name": "Lamp", "price": 10})
    again = await products.get("sku-1")
    assert again is not None and again.value["price"] == 10
    assert await products.delete("sku-1") is True
    assert await products.get("sku-1") is None
    assert await products.delete("sku-1") is False


async def test_listing_pages_through_every_document_with_a_cursor(app: App) -> None:
    items = app.namespace("items")
    assert await items.put_many({f"k{i:03d}": {"i": i} for i in range(25)}) == 25
    seen: list[str] = []
    cursor = None
    while True:
        page = await items.list(limit=10, cursor=cursor)
        seen.extend(d.key for d in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"k{i:03d}" for i in range(25)]
    assert [d.key for d in (await items.list(prefix="k01")).items] == [f"k01{i}" for i in range(10)]
    assert await items.count() == 25
    assert [(n.namespace, n.count) for n in await app.namespaces()] == [("items", 25)]


async def test_insert_only_if_absent(app: App) -> None:
    seen = app.namespace("seen")
    assert await seen.insert("a", 1) is True
    assert await seen.insert("a", 2) is False
    assert await seen.insert("b", 1, max_count=1) is False


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda ns: ns.put("", 1), "key"),
        (lambda ns: ns.put("x" * 513, 1), "513 bytes"),
        (lambda ns: ns.put("a\x00b", 1), "control"),
        (lambda ns: ns.put("k", {1, 2}), "not JSON"),
        (lambda ns: ns.put("k", "a\x00b"), "NUL"),
        (lambda ns: ns.put("k", "x" * 1_100_000), "limit"),
        (lambda ns: ns.list(limit=0), "limit"),
        (lambda ns: ns.list(cursor="%%%"), "cursor"),
    ],
)
async def test_bad_input_is_a_typed_error_naming_it(app: App, call: object, match: str) -> None:
    with pytest.raises(InvalidDocument, match=match):
        await call(app.namespace("n"))  # type: ignore[operator]


def test_a_bad_namespace_name_is_refused(app: App) -> None:
    with pytest.raises(InvalidDocument, match="namespace"):
        app.namespace("has space")


def test_sync_twins(sqlite_url: str) -> None:
    app = App(sqlite_url)
    try:
        ns = app.namespace("sync")
        ns.put_sync("a", [1])
        found = ns.get_sync("a")
        assert found is not None and found.value == [1]
        assert [d.key for d in ns.list_sync().items] == ["a"]
        assert ns.delete_sync("a") is True
    finally:
        app.close_sync()
