"""`generate-content`: text generation with an OpenAI-compatible chat completions
endpoint.

Payload: `prompt` (or `messages`: [{"role", "content"}]), `model` (passed through
unchanged, e.g. `@cf/meta/llama-3.1-8b-instruct`), optional `system`, `max_tokens`,
`temperature` and `stream`. The result holds the text, the finish reason and the token
usage. With `stream: true` the job reports its progress as tokens arrive (as a share of
`max_tokens` when given).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..context import JobContext
from ..retry import Backoff, PermanentError
from . import openai_api
from .common import JobOptions, Payload, register
from .openai_api import AiSettings

if TYPE_CHECKING:
    from ..app import App

PROGRESS_EVERY = 0.5  # [s] between progress writes while streaming


class ChatMessage(BaseModel):
    """One message of a conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateContent(Payload):
    """The `generate-content` payload (the Queue Service's shape: `{"prompt", "model"}`)."""

    prompt: str | None = Field(default=None, min_length=1)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    model: str = Field(min_length=1, max_length=200)
    system: str | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = False

    @model_validator(mode="after")
    def _one_input(self) -> GenerateContent:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of prompt or messages")
        return self

    def request(self) -> dict[str, Any]:
        """The chat completions request body."""
        messages: list[dict[str, str]] = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system})
        if self.prompt is not None:
            messages.append({"role": "user", "content": self.prompt})
        else:
            messages.extend(m.model_dump() for m in self.messages or [])
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body


class ContentExtension:
    """`generate-content`, installed by `app.use(contrib.content(...))`."""

    def __init__(self, settings: AiSettings | None, options: JobOptions) -> None:
        self.settings = settings
        self.options = options

    def install(self, app: App) -> None:
        """Register the `generate-content` job type on `app`."""
        holder: dict[str, AiSettings] = {}

        def settings() -> AiSettings:
            if "s" not in holder:
                holder["s"] = self.settings or AiSettings()
            return holder["s"]

        async def generate_content(payload: GenerateContent, ctx: JobContext) -> dict[str, Any]:
            config = settings()
            if payload.stream:
                return await _streamed(config, payload, ctx)
            answer = await openai_api.call(config, "chat/completions", payload.request())
            choice = _first_choice(answer)
            message = choice.get("message") or {}
            return {
                "text": message.get("content") or "",
                "finishReason": choice.get("finish_reason"),
                "usage": answer.get("usage"),
                "model": payload.model,
            }

        register(app, self.options, generate_content)


def _first_choice(answer: dict[str, Any]) -> dict[str, Any]:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise PermanentError("the AI endpoint returned no choices")
    choice: dict[str, Any] = choices[0]
    return choice


async def _streamed(
    config: AiSettings, payload: GenerateContent, ctx: JobContext
) -> dict[str, Any]:
    body = {**payload.request(), "stream": True, "stream_options": {"include_usage": True}}
    parts: list[str] = []
    finish = None
    usage = None
    pieces = 0
    last_report = time.monotonic()
    async for event in openai_api.stream(config, "chat/completions", body):
        usage = event.get("usage") or usage
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                parts.append(text)
                pieces += 1
            finish = choice.get("finish_reason") or finish
        if time.monotonic() - last_report >= PROGRESS_EVERY:
            last_report = time.monotonic()
            share = min(pieces / payload.max_tokens, 0.99) if payload.max_tokens else 0.0
            await ctx.progress(share, f"{pieces} tokens so far")
    await ctx.progress(1.0, f"{pieces} tokens")
    return {"text": "".join(parts), "finishReason": finish, "usage": usage, "model": payload.model}


def content(
    settings: AiSettings | None = None,
    *,
    name: str = "generate-content",
    queue: str = "ai",
    max_attempts: int = 5,
    timeout: float | None = 600.0,
    retry: Backoff | None = None,
) -> ContentExtension:
    """The `generate-content` job type: `app.use(contrib.content())` reads
    `TASKFLARE_AI_BASE_URL` and `TASKFLARE_AI_API_KEY` when it first runs."""
    options = JobOptions(
        name=name,
        queue=queue,
        max_attempts=max_attempts,
        timeout=timeout,
        retry=retry or Backoff(base=5, cap=600),
    )
    return ContentExtension(settings, options)
