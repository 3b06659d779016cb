"""`taskflare namespaces ...` as real processes, on both backends."""

from __future__ import annotations

from taskflare import App

from .cli_run import ok, one_line_error, tf, tf_json


def test_list_items_get_and_delete(database_url: str) -> None:
    app = App(database_url)
    app.run_sync(app.namespace("products").put_many({"sku-1": {"p": 1}, "sku-2": {"p": 2}}))
    app.close_sync()

    assert tf_json("namespaces", "list", url=database_url) == {
        "namespaces": [{"namespace": "products", "count": 2}]
    }
    page = tf_json("namespaces", "items", "products", "--limit", "1", url=database_url)
    assert [i["key"] for i in page["items"]] == ["sku-1"] and page["nextCursor"]
    rest = tf_json(
        "namespaces", "items", "products", "--cursor", page["nextCursor"], url=database_url
    )
    assert [i["key"] for i in rest["items"]] == ["sku-2"]
    assert "sku-1" in ok("namespaces", "items", "products", url=database_url)
    assert tf_json("namespaces", "get", "products", "sku-2", url=database_url)["value"] == {"p": 2}
    assert ok("namespaces", "delete", "products", "sku-2", url=database_url).startswith("deleted")
    error = one_line_error(tf("namespaces", "get", "products", "sku-2", url=database_url))
    assert "sku-2" in error
    bad = one_line_error(tf("namespaces", "items", "bad ns", url=database_url))
    assert "namespace" in bad
