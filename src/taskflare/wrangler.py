"""Read a Cloudflare project's `wrangler.toml` / `wrangler.jsonc`: its queues, consumer
settings and cron triggers, as taskflare declarations.

TOML is read with `tomllib`, JSON and JSONC (comments, trailing commas) with `json5`.
`--env NAME` selects `env.NAME` as Wrangler does: `queues` is not inherited from the top
level (an environment declares its own), `triggers` is. Keys taskflare does not support
are collected with the reason, never silently dropped.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5

from .errors import InvalidConfig

# Consumer keys -> `App.queue()` argument (and a conversion to its unit).
CONSUMER_KEYS = {
    "max_batch_size": "max_batch_size",
    "max_batch_timeout": "max_batch_timeout",
    "max_retries": "max_retries",
    "retry_delay": "retry_delay",
    "dead_letter_queue": "dead_letter_queue",
    "max_concurrency": "max_concurrency",
}
WHY = {
    "max_wait_time_ms": "use max_batch_timeout (seconds)",
    "visibility_timeout_ms": "",  # supported for pull consumers, converted below
}
# Top-level keys that have nothing to do with queues or cron triggers.
OTHER_KEYS = "not about queues or cron triggers: ignored"
KNOWN_TOP = {"name", "main", "compatibility_date", "compatibility_flags", "queues", "triggers"}


class WranglerConfigError(InvalidConfig):
    """A wrangler file cannot be read, or names an environment it does not have."""


@dataclass(frozen=True, slots=True)
class WranglerQueue:
    """One queue the file names: its `App.queue()` settings, its producer binding, and
    whether a consumer (push) or an HTTP pull consumer reads it."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    binding: str | None = None
    consumer: str | None = None  # "worker", "http_pull" or None (only produced to)
    # Setting (and "queue") -> where the file sets it: "queues.consumers[0].max_retries".
    paths: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WranglerConfig:
    """What a wrangler file declares for taskflare, and what it cannot take."""

    path: str
    env: str | None
    queues: list[WranglerQueue]
    crons: list[str]
    unsupported: list[str]  # "queues.consumers[0].delivery_delay: why"
    crons_at: str = "triggers.crons"  # where the file lists `crons`

    def to_dict(self) -> dict[str, Any]:
        """For `taskflare wrangler check --json`."""
        return {
            "path": self.path,
            "env": self.env,
            "queues": [
                {"name": q.name, "binding": q.binding, "consumer": q.consumer, **q.settings}
                for q in self.queues
            ],
            "crons": self.crons,
            "unsupported": self.unsupported,
        }


def read_file(path: str | Path) -> dict[str, Any]:
    """The file's document: TOML by `.toml`, else JSON/JSONC (comments, trailing commas)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise WranglerConfigError(f"cannot read {source}: {exc.strerror}") from None
    try:
        document = tomllib.loads(text) if source.suffix == ".toml" else json5.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise WranglerConfigError(f"{source} is not valid {source.suffix[1:]}: {exc}") from None
    if not isinstance(document, dict):
        raise WranglerConfigError(f"{source}: the top level must be a table/object")
    return document


def load_wrangler(path: str | Path, env: str | None = None) -> WranglerConfig:
    """Read `path` (for environment `env`, if given). `WranglerConfigError` for a file
    that does not parse or an unknown environment."""
    document = read_file(path)
    unsupported = [f"{key}: {OTHER_KEYS}" for key in document if key not in KNOWN_TOP | {"env"}]
    section = document
    if env is not None:
        envs = document.get("env") or {}
        if env not in envs:
            known = ", ".join(sorted(envs)) or "none"
            raise WranglerConfigError(f"{path} has no environment {env!r} (it has: {known})")
        section = envs[env]
    elif "env" in document:
        unsupported.append(
            f"env: environments {', '.join(sorted(document['env']))} not used "
            "(select one with --env)"
        )
    queues_doc = section.get("queues") or {}
    triggers = section.get("triggers", document.get("triggers")) or {}
    queues = _queues(queues_doc, unsupported, "queues" if env is None else f"env.{env}.queues")
    crons = [str(c) for c in triggers.get("crons", [])]
    crons_at = "triggers.crons"
    if env is not None and "triggers" in section:
        crons_at = f"env.{env}.triggers.crons"
    return WranglerConfig(str(path), env, queues, crons, unsupported, crons_at)


def _queues(doc: dict[str, Any], unsupported: list[str], where: str) -> list[WranglerQueue]:
    found: dict[str, WranglerQueue] = {}
    for index, consumer in enumerate(doc.get("consumers", [])):
        name = str(consumer["queue"])
        at = f"{where}.consumers[{index}]"
        settings = _consumer_settings(consumer, unsupported, at)
        kind = "http_pull" if consumer.get("type") == "http_pull" else "worker"
        paths = {"queue": f"{at}.queue"} | {
            setting: f"{at}.{key}"
            for key, setting in {
                **CONSUMER_KEYS,
                "visibility_timeout_ms": "visibility_timeout",
            }.items()
        }
        found[name] = WranglerQueue(name, settings, None, kind, paths)
    for index, producer in enumerate(doc.get("producers", [])):
        name = str(producer["queue"])
        at = f"{where}.producers[{index}]"
        for key in producer:
            if key not in ("queue", "binding", "delivery_delay"):
                reason = WHY.get(key) or "not supported by taskflare"
                unsupported.append(f"{at}.{key}: {reason}")
        known = found.get(name) or WranglerQueue(name, paths={"queue": f"{at}.queue"})
        settings, paths = dict(known.settings), dict(known.paths)
        if "delivery_delay" in producer:  # the queue's default delay, as Cloudflare's
            settings["delivery_delay"] = producer["delivery_delay"]
            paths["delivery_delay"] = f"{at}.delivery_delay"
        found[name] = WranglerQueue(name, settings, producer.get("binding"), known.consumer, paths)
    for queue in list(found.values()):  # a dead-letter queue is a queue too
        dlq = queue.settings.get("dead_letter_queue")
        if dlq and dlq not in found:
            found[dlq] = WranglerQueue(dlq)
    unsupported += [
        f"{where}.{key}: not supported by taskflare"
        for key in doc
        if key not in ("consumers", "producers")
    ]
    return list(found.values())


def _consumer_settings(
    consumer: dict[str, Any], unsupported: list[str], where: str
) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key, value in consumer.items():
        if key in ("queue", "type"):
            continue
        if key in CONSUMER_KEYS:
            settings[CONSUMER_KEYS[key]] = value
        elif key == "visibility_timeout_ms":
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            settings["visibility_timeout"] = value / 1000 if number else value
        else:
            unsupported.append(f"{where}.{key}: {WHY.get(key) or 'not supported by taskflare'}")
    return settings
