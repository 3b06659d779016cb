"""A small client for OpenAI-compatible HTTP APIs (OpenAI, Cloudflare Workers AI's
OpenAI-compatible endpoint, Ollama, vLLM, LM Studio): settings, one JSON call, and a
streamed chat completion. Errors become taskflare outcomes: 429 and 503 honour a
`Retry-After` longer than the backoff, other 5xx and network errors retry, other 4xx
fail with the provider's message. An answer that is not the API's (a page that is not
JSON, a stream without `[DONE]`) is an error too, never an empty or cut result."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from ..retry import PermanentError
from .common import ContribSettings, raise_for_http_status, redact
from .net import read_limited
from .network_errors import network_failure

MAX_ERROR_BYTES = 64 * 1024  # what of an error answer is read for its message


class AiSettings(ContribSettings):
    """Where the AI job types send requests (each field also from `TASKFLARE_AI_<NAME>`).

    `base_url`: the API root ending in `/v1` (OpenAI's by default; e.g.
    `https://api.cloudflare.com/client/v4/accounts/<id>/ai/v1`, `http://localhost:11434/v1`
    for Ollama). `api_key`: sent as a bearer token. `timeout` [s] per request.
    `embedding_batch_size`: texts per embeddings request.
    """

    model_config = SettingsConfigDict(env_prefix="TASKFLARE_AI_", extra="ignore", frozen=True)

    base_url: str = "https://api.openai.com/v1"
    api_key: SecretStr | None = None
    timeout: float = Field(default=120.0, gt=0)
    embedding_batch_size: int = Field(default=64, ge=1, le=2048)


def _headers(settings: AiSettings) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if settings.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
    return headers


def _provider_message(raw: bytes, settings: AiSettings) -> str:
    """The provider's error message from an error answer's body, the API key redacted
    (a provider may quote the key it refused)."""
    message = raw.decode("utf-8", "replace")[:300]
    try:
        data = json.loads(raw)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            message = str(error["message"])[:500]
        elif isinstance(error, str):
            message = error[:500]
    except ValueError:
        pass
    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    return redact(message, key)


def _unreachable(exc: httpx.TransportError, settings: AiSettings) -> RuntimeError:
    """A network error naming the host of `base_url` (never its key, user, path or
    query), retried with the job's backoff."""
    return network_failure(exc, settings.base_url, settings.timeout, "the AI endpoint")


def _url(settings: AiSettings, path: str) -> str:
    """`<base_url>/<path>`, the path joined to the base's path: a query the base carries
    (Azure OpenAI's `?api-version=...`) stays a query, after the joined path."""
    base = urlsplit(settings.base_url)
    return urlunsplit(base._replace(path=base.path.rstrip("/") + "/" + path))


async def _raise_for_error(response: httpx.Response, settings: AiSettings) -> None:
    """Raise for a status of 300 or more, reading at most `MAX_ERROR_BYTES` of the body
    for the provider's message (the key redacted)."""
    if response.status_code >= 300:
        raw = await read_limited(response, MAX_ERROR_BYTES)
        raise_for_http_status(
            response.status_code,
            response.headers,
            "the AI endpoint",
            _provider_message(raw, settings),
        )


async def call(settings: AiSettings, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST `body` to `<base_url>/<path>`; the JSON answer."""
    async with httpx.AsyncClient(timeout=settings.timeout, trust_env=False) as client:
        try:
            async with client.stream(
                "POST", _url(settings, path), json=body, headers=_headers(settings)
            ) as response:
                await _raise_for_error(response, settings)
                await response.aread()
        except httpx.TransportError as exc:  # timeouts too
            raise _unreachable(exc, settings) from None
        try:
            data = response.json()
        except ValueError:  # not JSON, or not UTF-8
            data = None
        if not isinstance(data, dict):
            raise PermanentError(_not_the_api(response, "a JSON object"))
        return data


def _not_the_api(response: httpx.Response, wanted: str) -> str:
    """Why an answer with a success status is not the API's: most often a `base_url`
    that names a web server rather than the API root (`.../v1`)."""
    kind = response.headers.get("content-type") or "no content type"
    return (
        f"the AI endpoint answered {response.status_code} with {kind}, not {wanted}: "
        "is base_url (TASKFLARE_AI_BASE_URL) the root of an OpenAI-compatible API, "
        "ending in /v1?"
    )


async def stream(
    settings: AiSettings, path: str, body: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """POST a streaming request; yield each server-sent event's JSON until `[DONE]`."""
    events = 0
    async with httpx.AsyncClient(timeout=settings.timeout, trust_env=False) as client:
        try:
            async with client.stream(
                "POST", _url(settings, path), json=body, headers=_headers(settings)
            ) as response:
                await _raise_for_error(response, settings)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    try:
                        event = json.loads(data)
                    except ValueError:
                        raise PermanentError(
                            f"the AI endpoint sent an event that is not JSON "
                            f"({len(data)} characters after 'data:')"
                        ) from None
                    events += 1
                    yield event
                if not events:
                    raise PermanentError(_not_the_api(response, "an event stream"))
        except httpx.TransportError as exc:  # timeouts too
            raise _unreachable(exc, settings) from None
    # The answer ended without `[DONE]`: what came is not the whole text (retried).
    raise RuntimeError(
        f"the AI endpoint's stream ended before [DONE] after {events} events: "
        "the answer is incomplete"
    )
