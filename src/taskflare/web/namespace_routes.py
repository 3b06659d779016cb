"""Reading the document store: `GET /namespaces`, `GET /namespaces/{ns}/items[/{key}]`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ..app import App
from ..documents import MAX_LIST_LIMIT
from ..errors import InvalidDocument
from .common import ERRORS, ApiError
from .security import items_within


class NamespacesResponse(BaseModel):
    """`GET /namespaces`."""

    success: bool = True
    namespaces: list[dict[str, Any]]


class ItemsResponse(BaseModel):
    """`GET /namespaces/{ns}/items`: a page in key order and the cursor of the next."""

    success: bool = True
    namespace: str
    count: int
    items: list[dict[str, Any]]
    nextCursor: str | None = None


class ItemResponse(BaseModel):
    """`GET /namespaces/{ns}/items/{key}`."""

    success: bool = True
    item: dict[str, Any]


def namespace_router(app: App) -> APIRouter:
    """The routes, bound to `app`."""
    router = APIRouter(tags=["documents"], responses=ERRORS)

    @router.get("/namespaces", response_model=NamespacesResponse)
    async def namespaces() -> NamespacesResponse:
        found = await app.namespaces()
        return NamespacesResponse(
            namespaces=[{"namespace": n.namespace, "count": n.count} for n in found]
        )

    @router.get("/namespaces/{namespace}/items", response_model=ItemsResponse)
    async def items(
        namespace: str,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
        prefix: Annotated[str | None, Query(max_length=512)] = None,
    ) -> ItemsResponse:
        try:
            store = app.namespace(namespace)
            page = await store.list(limit=limit, cursor=cursor, prefix=prefix)
            docs = [d.to_dict() for d in page.items]
            if (fit := items_within(docs)) < len(docs):  # ~8 MB at most: a shorter page
                page = await store.list(limit=fit, cursor=cursor, prefix=prefix)
                docs = [d.to_dict() for d in page.items]
        except InvalidDocument as exc:
            raise ApiError(400, str(exc), "invalid") from None
        return ItemsResponse(
            namespace=namespace, count=len(docs), items=docs, nextCursor=page.next_cursor
        )

    @router.get("/namespaces/{namespace}/items/{key:path}", response_model=ItemResponse)
    async def item(namespace: str, key: str) -> ItemResponse:
        try:
            found = await app.namespace(namespace).get(key)
        except InvalidDocument as exc:
            raise ApiError(400, str(exc), "invalid") from None
        if found is None:
            raise ApiError(404, f"no item {key!r} in namespace {namespace!r}", "not_found")
        return ItemResponse(item=found.to_dict())

    return router
