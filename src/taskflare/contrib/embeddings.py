"""`generate-embedding`: embed one text or many with an OpenAI-compatible embeddings
endpoint; store each vector with its model and dimensions.

Payload: `text` (a string or a list of strings), `model` (passed through unchanged, e.g.
`@cf/baai/bge-base-en-v1.5`), optional `namespace` (default `embeddings`) and `keys` (one
per text, no two alike; default: the job id and the text's position). Texts are sent
`embedding_batch_size` at a time, with progress after each request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from ..context import JobContext
from ..documents import check_key, check_namespace
from ..errors import InvalidDocument
from ..retry import Backoff, PermanentError
from . import openai_api
from .common import (
    JobOptions,
    Payload,
    Sink,
    check_sink,
    namespace_sink,
    refuse_repeats,
    register,
)
from .openai_api import AiSettings

if TYPE_CHECKING:
    from ..app import App


class GenerateEmbedding(Payload):
    """The `generate-embedding` payload (the Queue Service's shape: `{"text", "model"}`)."""

    text: str | list[str]
    model: str = Field(min_length=1, max_length=200)
    namespace: str = "embeddings"
    keys: list[str] | None = None

    @field_validator("text")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not 1 <= len(texts) <= 2048:
            raise ValueError("give 1 to 2048 texts")
        if any(not t for t in texts):
            raise ValueError("a text must not be empty")
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        try:
            return check_namespace(value)
        except InvalidDocument as exc:
            raise ValueError(str(exc)) from None

    @field_validator("keys")
    @classmethod
    def _each_key(cls, value: list[str] | None) -> list[str] | None:
        for index, key in enumerate(value or ()):
            try:
                check_key(key)
            except InvalidDocument as exc:
                raise ValueError(f"item {index}: {exc}") from None
        # One vector would overwrite the other under a key given twice.
        refuse_repeats(value or (), "each text needs a key of its own")
        return value

    @model_validator(mode="after")
    def _keys(self) -> GenerateEmbedding:
        if self.keys is not None and len(self.keys) != len(self.texts):
            raise ValueError(
                f"keys: give one key per text ({len(self.keys)} keys for {len(self.texts)} texts)"
            )
        return self

    @property
    def texts(self) -> list[str]:
        """The texts, as a list."""
        return [self.text] if isinstance(self.text, str) else list(self.text)


class EmbeddingExtension:
    """`generate-embedding`, installed by `app.use(contrib.embeddings(...))`."""

    def __init__(self, settings: AiSettings | None, options: JobOptions, sink: Sink | None) -> None:
        self.settings = settings
        self.options = options
        self.sink = check_sink(sink)

    def install(self, app: App) -> None:
        """Register the `generate-embedding` job type on `app`."""
        holder: dict[str, AiSettings] = {}
        sink = self.sink or namespace_sink(app)

        def settings() -> AiSettings:
            if "s" not in holder:
                holder["s"] = self.settings or AiSettings()
            return holder["s"]

        async def generate_embedding(payload: GenerateEmbedding, ctx: JobContext) -> dict[str, Any]:
            config = settings()
            texts = payload.texts
            keys = payload.keys or [f"{ctx.job_id}:{i}" for i in range(len(texts))]
            size = config.embedding_batch_size
            dimensions = None
            tokens = 0
            for start in range(0, len(texts), size):
                batch = texts[start : start + size]
                answer = await openai_api.call(
                    config, "embeddings", {"model": payload.model, "input": batch}
                )
                vectors = _vectors(answer, len(batch))
                dimensions = len(vectors[0])
                tokens += int((answer.get("usage") or {}).get("total_tokens") or 0)
                records = [
                    (
                        key,
                        {
                            "text": text,
                            "embedding": vector,
                            "model": payload.model,
                            "dimensions": len(vector),
                        },
                    )
                    for key, text, vector in zip(keys[start:], batch, vectors, strict=False)
                ]
                await sink(payload.namespace, records)
                done = min(start + size, len(texts))
                await ctx.progress(done / len(texts), f"{done} of {len(texts)} embedded")
            return {
                "model": payload.model,
                "dimensions": dimensions,
                "count": len(texts),
                "namespace": payload.namespace,
                "keys": keys,
                "usage": {"total_tokens": tokens},
            }

        register(app, self.options, generate_embedding)


def _vectors(answer: dict[str, Any], expected: int) -> list[list[float]]:
    """The vectors of an embeddings answer, in input order; `PermanentError` if malformed.

    Each item's `index` says which input it embeds (OpenAI's API); they must be 0 to n-1,
    once each, or absent from every item (then the answer's order is the input's). An
    index given twice would store one text's vector under another text's key."""
    data = answer.get("data")
    if not isinstance(data, list) or len(data) != expected:
        size = len(data) if isinstance(data, list) else 0
        raise PermanentError(f"the AI endpoint returned {size} embeddings for {expected} texts")
    if not all(isinstance(d, dict) for d in data):
        raise PermanentError("the AI endpoint returned an embedding that is not an object")
    ordered = _in_input_order(data, expected)
    vectors: list[Any] = [d.get("embedding") for d in ordered]
    if not all(isinstance(v, list) and v for v in vectors):
        raise PermanentError("the AI endpoint returned an embedding that is not a list of numbers")
    return vectors


def _in_input_order(data: list[dict[str, Any]], expected: int) -> list[dict[str, Any]]:
    """The answer's items ordered by their `index`, or as they came when none has one;
    `PermanentError` naming the first index that is missing, repeated or out of range."""
    indices = [d.get("index") for d in data]
    if all(i is None for i in indices):
        return data
    seen: set[int] = set()
    for position, index in enumerate(indices):
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < expected:
            shown = repr(index)[:40]
            raise PermanentError(
                f"the AI endpoint returned embedding {position} with index {shown}, "
                f"not one of 0 to {expected - 1}"
            )
        if index in seen:
            raise PermanentError(
                f"the AI endpoint returned index {index} twice for {expected} texts "
                "(one text's vector would be stored under another's key)"
            )
        seen.add(index)
    return sorted(data, key=lambda d: int(d["index"]))


def embeddings(
    settings: AiSettings | None = None,
    *,
    sink: Sink | None = None,
    name: str = "generate-embedding",
    queue: str = "ai",
    max_attempts: int = 5,
    timeout: float | None = 300.0,
    retry: Backoff | None = None,
) -> EmbeddingExtension:
    """The `generate-embedding` job type: `app.use(contrib.embeddings())` reads
    `TASKFLARE_AI_BASE_URL` and `TASKFLARE_AI_API_KEY` when it first runs.

    `sink`: an async callable `(namespace, [(key, {"text", "embedding", "model",
    "dimensions"}), ...])` to store vectors in your own tables (a vector database, say).
    """
    options = JobOptions(
        name=name,
        queue=queue,
        max_attempts=max_attempts,
        timeout=timeout,
        retry=retry or Backoff(base=5, cap=600),
    )
    return EmbeddingExtension(settings, options, sink)
