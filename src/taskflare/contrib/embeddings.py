"""`generate-embedding`: embed one text or many with an OpenAI-compatible embeddings
endpoint; store each vector with its model and dimensions.

Payload: `text` (a string or a list of strings), `model` (passed through unchanged, e.g.
`@cf/baai/bge-base-en-v1.5`), optional `namespace` (default `embeddings`) and `keys` (one
per text; default: the job id and the text's position). Texts are sent
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
from .common import JobOptions, Payload, Sink, check_sink, namespace_sink, register
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

    @model_validator(mode="after")
    def _keys(self) -> GenerateEmbedding:
        if self.keys is not None:
            if len(self.keys) != len(self.texts):
                raise ValueError("keys: give one key per text")
            for key in self.keys:
                try:
                    check_key(key)
                except InvalidDocument as exc:
                    raise ValueError(f"keys: {exc}") from None
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
    """The vectors of an embeddings answer, in input order; `PermanentError` if malformed."""
    data = answer.get("data")
    if not isinstance(data, list) or len(data) != expected:
        raise PermanentError(
            f"the AI endpoint returned {len(data or [])} embeddings for {expected} texts"
        )
    ordered = sorted(data, key=lambda d: d.get("index", 0))
    vectors = [d.get("embedding") for d in ordered]
    if not all(isinstance(v, list) and v for v in vectors):
        raise PermanentError("the AI endpoint returned an embedding that is not a list of numbers")
    return vectors


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
