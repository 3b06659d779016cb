"""`GET /namespaces`, `GET /namespaces/{ns}/items[/{key}]` over a real server, both backends."""

from __future__ import annotations

from taskflare import App

from .server import READ_TOKEN, LiveServer


async def test_items_are_listed_with_a_cursor_and_read_one_by_one(live: LiveServer) -> None:
    app = App(live.database_url)
    try:
        await app.namespace("products").put_many(
            {f"sku-{i}": {"price": i} for i in range(5)} | {"a/b c": {"odd": "key"}}
        )
    finally:
        await app.close()
    with live.client(READ_TOKEN) as client:
        listed = client.get("/namespaces").json()
        assert listed == {"success": True, "namespaces": [{"namespace": "products", "count": 6}]}
        first = client.get("/namespaces/products/items", params={"limit": 4}).json()
        assert [i["key"] for i in first["items"]] == ["a/b c", "sku-0", "sku-1", "sku-2"]
        assert first["count"] == 4 and first["nextCursor"]
        rest = client.get(
            "/namespaces/products/items", params={"cursor": first["nextCursor"]}
        ).json()
        assert [i["key"] for i in rest["items"]] == ["sku-3", "sku-4"]
        assert rest["nextCursor"] is None
        one = client.get("/namespaces/products/items/sku-3").json()
        assert one["item"]["value"] == {"price": 3} and one["item"]["namespace"] == "products"
        slashed = client.get("/namespaces/products/items/a%2Fb%20c")
        assert slashed.status_code == 200 and slashed.json()["item"]["value"] == {"odd": "key"}
        missing = client.get("/namespaces/products/items/nope")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]
        bad = client.get("/namespaces/products/items", params={"cursor": "%%%"})
        assert bad.status_code == 400 and "cursor" in bad.json()["error"]
        bad_ns = client.get("/namespaces/bad%20ns/items")
        assert bad_ns.status_code == 400 and "namespace" in bad_ns.json()["error"]
        bad_limit = client.get("/namespaces/products/items", params={"limit": 0})
        assert bad_limit.status_code == 422 and "limit" in bad_limit.json()["error"]
    with live.client(None) as anonymous:
        assert anonymous.get("/namespaces/products/items").status_code == 401
