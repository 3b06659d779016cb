"""`batch-import`: upsert many items into a namespace, in chunks, with progress.

Payload: `namespace` and one source: `items` (a list of objects, inline), `url` (NDJSON or
CSV over http/https) or `file` (a path under one of the settings' `allowed_dirs`);
optional `key` (the field that identifies an item), `format` (`ndjson` or `csv`, else
from the name) and `strict`. Each item is written under its key (without `key`: the job
id and the item's position), so a retried import overwrites instead of duplicating.
Invalid items (not an object, no key, too large, refused by the namespace's model) are
reported with their index and reason; with `strict: true` any invalid item fails the
import before anything is written.
"""

from __future__ import annotations

import codecs
import csv
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import httpx
import orjson
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import SettingsConfigDict

from ..context import JobContext
from ..documents import check_key, check_namespace, encode_value
from ..errors import InvalidDocument
from ..retry import Backoff, PermanentError
from .common import (
    ContribSettings,
    JobOptions,
    Payload,
    Sink,
    check_sink,
    namespace_sink,
    raise_for_http_status,
    refuse_repeats,
    register,
)
from .net import DestinationPolicy, check_url, pinned_request, redirect_target
from .network_errors import network_failure

if TYPE_CHECKING:
    from ..app import App

MAX_REPORTED_INVALID = 100
MAX_REDIRECTS = 5  # followed for a `url` source


class BatchImport(Payload):
    """The `batch-import` payload (the Queue Service's shape: `{"items": [...],
    "namespace": "products"}`)."""

    namespace: str
    # Before `items`, whose check reads it.
    key: str | None = Field(default=None, min_length=1, max_length=200)
    items: list[Any] | None = None
    url: str | None = None
    file: str | None = None
    format: Literal["ndjson", "csv"] | None = None
    strict: bool = False

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        try:
            return check_namespace(value)
        except InvalidDocument as exc:
            raise ValueError(str(exc)) from None

    @field_validator("items")
    @classmethod
    def _keys_once(cls, value: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        """Two inline items with the same `key` would be written under one key, the later
        overwriting the earlier while both count as imported: refused at enqueue. (An
        item without a usable key is reported by the import, with its index.)"""
        field = info.data.get("key")
        if value is not None and field is not None:
            refuse_repeats(
                (_key_text(item.get(field)) if isinstance(item, dict) else None for item in value),
                f"items with the same {field!r} would overwrite one another",
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BatchImport:
        given = [n for n in ("items", "url", "file") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of items, url or file (got {given or 'none'})")
        return self


class ImportSettings(ContribSettings):
    """How `batch-import` reads and writes (each field also from `TASKFLARE_IMPORT_<NAME>`).

    `chunk_size`: items written per transaction (and per progress report).
    `allowed_dirs`: folders `file` sources may be read from (none: file sources refused).
    `max_source_bytes`: the largest `url`/`file` source. `allow_private` and
    `allowed_networks`: which addresses `url` sources may reach (see webhook-delivery).
    """

    model_config = SettingsConfigDict(env_prefix="TASKFLARE_IMPORT_", extra="ignore", frozen=True)

    chunk_size: int = Field(default=500, ge=1, le=1000)
    allowed_dirs: list[str] = Field(default_factory=list)
    max_source_bytes: int = Field(default=1 << 30, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    allow_private: bool = False
    allowed_networks: list[str] = Field(default_factory=list)


Validator = Callable[[dict[str, Any]], dict[str, Any]]


def _format_of(payload: BatchImport, name: str, content_type: str = "") -> str:
    if payload.format:
        return payload.format
    if name.lower().endswith(".csv") or "csv" in content_type:
        return "csv"
    return "ndjson"


def _records(source: IO[bytes], fmt: str) -> Iterator[Any]:
    """Items of an NDJSON or CSV file (a CSV row is an object keyed by the header);
    an unreadable NDJSON line is yielded as a `ValueError` to report."""
    text = codecs.getreader("utf-8")(source, "replace")
    if fmt == "csv":
        yield from csv.DictReader(text)
        return
    for line in text:
        if not line.strip():
            continue
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield ValueError(f"not JSON: {exc}")


def _key_text(value: Any) -> str | None:
    """An item's key field as the key it is stored under (`7` and `"7"` are one key), or
    None if it cannot be a key (missing, empty, not a string or an integer)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        return None
    return str(value)


def _reason(exc: Exception) -> str:
    """One line saying why an item is invalid (a model's errors name their fields)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()[:5]
        )
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


class ImportRun:
    """One attempt of an import: validate, chunk, write, report."""

    def __init__(
        self,
        payload: BatchImport,
        ctx: JobContext,
        sink: Sink,
        validator: Validator | None,
        chunk_size: int,
    ) -> None:
        self.payload = payload
        self.ctx = ctx
        self.sink = sink
        self.validator = validator
        self.chunk_size = chunk_size
        self.invalid: list[dict[str, Any]] = []
        self.invalid_count = 0
        self.imported = 0

    def check(self, index: int, item: Any) -> tuple[str, Any] | None:
        """The record for a valid item, or None (the problem recorded)."""
        try:
            if isinstance(item, Exception):
                raise item
            if not isinstance(item, dict):
                raise ValueError(f"an item must be an object, got {type(item).__name__}")
            if self.validator is not None:
                item = self.validator(item)
            key = self._key(index, item)
            encode_value(item, key=key)  # JSON (no NaN: a model's float of "nan"), 1 MiB
            return key, item
        except (ValueError, TypeError, ValidationError, InvalidDocument) as exc:
            self.invalid_count += 1
            if len(self.invalid) < MAX_REPORTED_INVALID:
                reason = _reason(exc)
                self.invalid.append({"index": index, "reason": reason[:300]})
            return None

    def _key(self, index: int, item: dict[str, Any]) -> str:
        field = self.payload.key
        if field is None:
            return f"{self.ctx.job_id}:{index:08d}"
        text = _key_text(item.get(field))
        if text is None:
            raise ValueError(f"key field {field!r} is missing or not a string or integer")
        return check_key(text)

    async def validate_all(self, items: Iterator[Any]) -> None:
        """Strict imports: every item must be valid before anything is written."""
        for index, item in enumerate(items):
            self.check(index, item)
        if self.invalid_count:
            first = "; ".join(f"item {p['index']}: {p['reason']}" for p in self.invalid[:5])
            raise PermanentError(
                f"strict import refused: {self.invalid_count} invalid item(s), nothing was "
                f"imported ({first})"
            )

    async def write(self, items: Iterator[Any], total: Callable[[], float | None]) -> None:
        """Write valid items chunk by chunk, reporting progress after each."""
        chunk: list[tuple[str, Any]] = []
        for index, item in enumerate(items):
            record = self.check(index, item)
            if record is not None:
                chunk.append(record)
            if len(chunk) >= self.chunk_size:
                await self._flush(chunk, total())
                chunk = []
        await self._flush(chunk, 1.0)

    async def _flush(self, chunk: list[tuple[str, Any]], fraction: float | None) -> None:
        if chunk:
            await self.sink(self.payload.namespace, chunk)
            self.imported += len(chunk)
        if fraction is not None:
            await self.ctx.progress(min(fraction, 1.0), f"{self.imported} imported")

    def result(self) -> dict[str, Any]:
        return {
            "namespace": self.payload.namespace,
            "imported": self.imported,
            "invalidCount": self.invalid_count,
            "invalid": self.invalid,
        }


class ImportExtension:
    """`batch-import`, installed by `app.use(contrib.imports(...))`."""

    def __init__(
        self,
        settings: ImportSettings | None,
        options: JobOptions,
        sink: Sink | None,
        models: dict[str, type[BaseModel]],
    ) -> None:
        self.settings = settings
        self.options = options
        self.sink = check_sink(sink)
        self.models = models

    def validator_for(self, namespace: str) -> Validator | None:
        """Items of a namespace with a model are validated (and normalised) by it."""
        model = self.models.get(namespace)
        if model is None:
            return None
        return lambda item: model.model_validate(item).model_dump(mode="json")

    def install(self, app: App) -> None:
        """Register the `batch-import` job type on `app`."""
        holder: dict[str, ImportSettings] = {}
        sink = self.sink or namespace_sink(app)

        def settings() -> ImportSettings:
            if "s" not in holder:
                holder["s"] = self.settings or ImportSettings()
            return holder["s"]

        async def batch_import(payload: BatchImport, ctx: JobContext) -> dict[str, Any]:
            config = settings()
            run = ImportRun(
                payload, ctx, sink, self.validator_for(payload.namespace), config.chunk_size
            )
            if payload.items is not None:
                items = payload.items
                if payload.strict:
                    await run.validate_all(iter(items))
                    run = ImportRun(payload, ctx, sink, run.validator, config.chunk_size)
                done = [0]

                def fraction() -> float:
                    return done[0] / max(len(items), 1)

                def counted() -> Iterator[Any]:
                    for item in items:
                        done[0] += 1
                        yield item

                await run.write(counted(), fraction)
                return run.result()
            with await _spool(payload, config) as (source, fmt, size):
                if payload.strict:
                    await run.validate_all(_records(source, fmt))
                    source.seek(0)
                    run = ImportRun(payload, ctx, sink, run.validator, config.chunk_size)
                await run.write(_records(source, fmt), lambda: source.tell() / max(size, 1))
            return run.result()

        register(app, self.options, batch_import)


class _Spooled:
    """A source copied into a temporary file: (file, format, size) while open."""

    def __init__(self, handle: IO[bytes], fmt: str, size: int) -> None:
        self.handle, self.fmt, self.size = handle, fmt, size

    def __enter__(self) -> tuple[IO[bytes], str, int]:
        self.handle.seek(0)
        return self.handle, self.fmt, self.size

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


async def _spool(payload: BatchImport, config: ImportSettings) -> _Spooled:
    """Copy a `file` or `url` source into a temporary file (at most `max_source_bytes`)."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
    try:
        if payload.file is not None:
            path = _allowed_path(payload.file, config)
            with path.open("rb") as source:
                size = _copy(source, spool, config.max_source_bytes)
            return _Spooled(spool, _format_of(payload, path.name), size)
        assert payload.url is not None
        url = check_url(payload.url)
        policy = DestinationPolicy.create(config.allow_private, config.allowed_networks)
        async with httpx.AsyncClient(timeout=config.timeout, trust_env=False) as client:
            try:
                response = await pinned_request(client, "GET", url, policy)
                for _ in range(MAX_REDIRECTS):
                    # Data URLs often redirect (release assets, signed storage links): each
                    # target is checked like the first, and must be http(s) too.
                    location = redirect_target(response, url)
                    if location is None:
                        break
                    await response.aclose()
                    try:
                        url = check_url(str(location), "url (redirect target)")
                    except ValueError as exc:
                        raise PermanentError(f"{exc}: {location}") from None
                    response = await pinned_request(client, "GET", url, policy)
                try:
                    if response.status_code >= 300:  # its body is not read
                        raise_for_http_status(response.status_code, response.headers, url.host)
                    size = 0
                    async for block in response.aiter_bytes():
                        size += len(block)
                        if size > config.max_source_bytes:
                            raise PermanentError(
                                f"the source is larger than {config.max_source_bytes} bytes "
                                "(max_source_bytes)"
                            )
                        spool.write(block)
                finally:
                    await response.aclose()
            except httpx.HTTPError as exc:  # (a name that does not resolve: our OSError)
                raise network_failure(exc, url, config.timeout, "the source at") from None
        fmt = _format_of(payload, url.path, response.headers.get("content-type", ""))
        return _Spooled(spool, fmt, size)
    except BaseException:
        spool.close()
        raise


def _allowed_path(name: str, config: ImportSettings) -> Path:
    path = Path(name).resolve()
    for folder in config.allowed_dirs:
        root = Path(folder).resolve()
        if path.is_relative_to(root):
            if not path.is_file():
                raise PermanentError(f"file source {name!r} does not exist")
            return path
    raise PermanentError(
        f"file source {name!r} is outside the allowed folders (TASKFLARE_IMPORT_ALLOWED_DIRS)"
    )


def _copy(source: IO[bytes], target: IO[bytes], limit: int) -> int:
    size = 0
    while block := source.read(1 << 20):
        size += len(block)
        if size > limit:
            raise PermanentError(f"the source is larger than {limit} bytes (max_source_bytes)")
        target.write(block)
    return size


def imports(
    settings: ImportSettings | None = None,
    *,
    sink: Sink | None = None,
    models: dict[str, type[BaseModel]] | None = None,
    name: str = "batch-import",
    queue: str = "imports",
    max_attempts: int = 3,
    timeout: float | None = None,
    retry: Backoff | None = None,
) -> ImportExtension:
    """The `batch-import` job type: `app.use(contrib.imports())`.

    `sink`: an async callable `(namespace, [(key, item), ...])` that upserts into your
    own tables instead of taskflare's document store. `models`: a pydantic model per
    namespace that each item must satisfy (items are stored as the model dumps them).
    """
    options = JobOptions(
        name=name,
        queue=queue,
        max_attempts=max_attempts,
        timeout=timeout,
        retry=retry or Backoff(base=10, cap=600),
    )
    return ImportExtension(settings, options, sink, dict(models or {}))
