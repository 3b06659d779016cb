"""The namespaced document store: JSON documents by (namespace, key), in the app's database.

`app.namespace("products")` gives a `Namespace` handle: `put`, `put_many`, `get`, `list`
(key order, with a cursor), `delete`, `count`. The built-in job types write imports,
crawled pages and embeddings here by default; the HTTP API (`GET /namespaces/{ns}/items`)
and `taskflare namespaces` read it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import orjson

from .backends.base import (
    DocInsertParams,
    DocKeyParams,
    DocListParams,
    DocNamespaceParams,
    DocPutManyParams,
    DocumentRecord,
)
from .encoding import encode_json
from .errors import InvalidDocument
from .messages import timestamp_from_epoch
from .storage import Storage

T = TypeVar("T")

MAX_KEY_BYTES = 512  # Cloudflare KV's key limit
MAX_VALUE_BYTES = 1_048_576
MAX_PUT_MANY = 1000
MAX_LIST_LIMIT = 1000
_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,199}$")


def check_namespace(name: object) -> str:
    """A namespace name: 1-200 letters, digits, `.`, `_`, `:` or `-`, starting with a letter
    or digit; else `InvalidDocument` naming it."""
    if not isinstance(name, str) or not _NAMESPACE.match(name):
        raise InvalidDocument(
            f"namespace must be 1-200 letters, digits, '.', '_', ':' or '-' starting with a "
            f"letter or digit, got {str(name)[:80]!r}"
        )
    return name


def check_key(key: object) -> str:
    """A document key: a non-empty string of at most 512 UTF-8 bytes, without control
    characters; else `InvalidDocument`."""
    if not isinstance(key, str) or not key:
        raise InvalidDocument(f"key must be a non-empty string, got {key!r:.80}")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InvalidDocument(f"key is {size} bytes; the limit is {MAX_KEY_BYTES}")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidDocument(f"key must not contain control characters: {key[:80]!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDocument(f"key is not valid UTF-8 text: {key[:80]!r}") from None
    return key


def encode_value(value: Any, *, key: str = "") -> bytes:
    """A document value as stored JSON (at most 1 MiB); `InvalidDocument` if it is not JSON,
    holds a NaN or an infinity (naming where: `value.price`), a NUL character (PostgreSQL's
    JSON cannot), or is too large."""
    data = encode_json(value, "value", InvalidDocument, context=f"document {key!r}: ")
    if b"\\u0000" in data:
        raise InvalidDocument(f"value of {key!r} holds a NUL character (\\u0000)")
    if len(data) > MAX_VALUE_BYTES:
        raise InvalidDocument(
            f"value of {key!r} is {len(data)} bytes of JSON; the limit is {MAX_VALUE_BYTES}"
        )
    return data


def encode_cursor(key: str) -> str:
    """An opaque cursor: the last key of a page."""
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_cursor(cursor: str) -> str:
    """The key a cursor stands for; `InvalidDocument` if it is not one of ours."""
    try:
        return check_key(base64.urlsafe_b64decode(cursor.encode()).decode())
    except Exception:
        raise InvalidDocument(f"invalid cursor {cursor[:80]!r}") from None


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document: `value` is the JSON value as written; `updated_at` its last write."""

    namespace: str
    key: str
    value: Any
    updated_at: datetime

    @classmethod
    def from_record(cls, record: DocumentRecord) -> Document:
        """Decode a backend record."""
        return cls(
            record.namespace,
            record.key,
            orjson.loads(record.value),
            timestamp_from_epoch(record.updated_at),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: `{"namespace", "key", "value", "updatedAt"}`."""
        return {
            "namespace": self.namespace,
            "key": self.key,
            "value": self.value,
            "updatedAt": self.updated_at.isoformat().replace("+00:00", "Z"),
        }


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """One page of a listing; pass `next_cursor` back for the next (None: the last page)."""

    items: list[Document]
    next_cursor: str | None


class Namespace:
    """The documents of one namespace. Every method raises `InvalidDocument` for a bad
    key, value, limit or cursor and `BackendUnavailable` when the database is down."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.name = check_namespace(name)
        self._storage = storage

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    async def put(self, key: str, value: Any) -> None:
        """Insert or replace the document `key` with the JSON `value`."""
        data = encode_value(value, key=check_key(key))
        backend = await self._storage.backend()
        await backend.doc_put_many(DocPutManyParams(self.name, [(key, data)]))

    async def put_many(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> int:
        """Insert or replace up to 1000 documents at once, all or nothing; return how many
        distinct keys were written (a key given twice keeps its last value)."""
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        if len(pairs) > MAX_PUT_MANY:
            raise InvalidDocument(
                f"put_many takes at most {MAX_PUT_MANY} documents, got {len(pairs)}"
            )
        encoded = [(check_key(k), encode_value(v, key=k)) for k, v in pairs]
        if not encoded:
            return 0
        backend = await self._storage.backend()
        await backend.doc_put_many(DocPutManyParams(self.name, encoded))
        return len({k for k, _ in encoded})

    async def insert(self, key: str, value: Any, *, max_count: int | None = None) -> bool:
        """Store `key` only if it is absent (and, with `max_count`, only while the namespace
        holds fewer documents); True if this call stored it. Decided atomically, so of
        several workers inserting one key exactly one gets True."""
        data = encode_value(value, key=check_key(key))
        if max_count is not None and (isinstance(max_count, bool) or max_count < 0):
            raise InvalidDocument(f"max_count must be a non-negative integer, got {max_count!r}")
        backend = await self._storage.backend()
        return await backend.doc_insert(DocInsertParams(self.name, key, data, max_count))

    async def get(self, key: str) -> Document | None:
        """The document `key`, or None."""
        backend = await self._storage.backend()
        record = await backend.doc_get(DocKeyParams(self.name, check_key(key)))
        return None if record is None else Document.from_record(record)

    async def list(
        self, *, limit: int = 100, cursor: str | None = None, prefix: str | None = None
    ) -> DocumentPage:
        """Documents in key order (code point order), `limit` (1-1000) at a time, only keys
        starting with `prefix` if given; pass `page.next_cursor` back for the next page."""
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_LIST_LIMIT
        ):
            raise InvalidDocument(f"limit must be 1..{MAX_LIST_LIMIT}, got {limit!r}")
        after = None if cursor is None else decode_cursor(cursor)
        if prefix is not None:
            check_key(prefix)
        backend = await self._storage.backend()
        records = await backend.doc_list(DocListParams(self.name, limit + 1, after, prefix))
        items = [Document.from_record(r) for r in records[:limit]]
        more = len(records) > limit and items
        return DocumentPage(items, encode_cursor(items[-1].key) if more else None)

    async def delete(self, key: str) -> bool:
        """Delete the document `key`; True if it existed."""
        backend = await self._storage.backend()
        return await backend.doc_delete(DocKeyParams(self.name, check_key(key)))

    async def count(self) -> int:
        """How many documents this namespace holds."""
        backend = await self._storage.backend()
        return await backend.doc_count(DocNamespaceParams(self.name))

    # Blocking twins, for code that is not async (Django, Flask, scripts).

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._storage.run_sync(coro)

    def put_sync(self, key: str, value: Any) -> None:
        """Blocking twin of `put`."""
        self._sync(self.put(key, value))

    def get_sync(self, key: str) -> Document | None:
        """Blocking twin of `get`."""
        return self._sync(self.get(key))

    def list_sync(
        self, *, limit: int = 100, cursor: str | None = None, prefix: str | None = None
    ) -> DocumentPage:
        """Blocking twin of `list`."""
        return self._sync(self.list(limit=limit, cursor=cursor, prefix=prefix))

    def delete_sync(self, key: str) -> bool:
        """Blocking twin of `delete`."""
        return self._sync(self.delete(key))
