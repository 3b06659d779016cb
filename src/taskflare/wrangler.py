"""Read a Cloudflare project's `wrangler.toml` / `wrangler.jsonc`: its queues, consumer
settings and cron triggers, as taskflare declarations.

TOML is read with `tomllib`, JSON and JSONC (comments, trailing commas) with `json5`.
The document's shape (tables, lists, strings, required keys) is checked before it is
read (`wrangler_schema`), and a queue given two consumers is refused, so a bad file is
one `WranglerConfigError` naming each key path, never a `KeyError`. `--env NAME` selects
`env.NAME` as Wrangler does: `queues` is not inherited from the top level (an
environment declares its own), `triggers` is. Keys taskflare does not support are
collected with the reason, never silently dropped.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator
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
    """A wrangler file cannot be read, is not valid TOML/JSON(C), is badly shaped (a key
    path per problem: `queues.consumers[0].queue: required`), gives a queue two consumers,
    or has no environment of the name asked for."""


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
    """The file's document: TOML by `.toml`, else JSON/JSONC (comments, trailing commas).
    `WranglerConfigError` naming the file (and the line and column where the parser
    stopped) if it cannot be read, is not UTF-8, does not parse or repeats a JSON key."""
    source = Path(path)
    kind = "TOML" if source.suffix == ".toml" else "JSON" if source.suffix == ".json" else "JSONC"
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise WranglerConfigError(f"cannot read {source}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise WranglerConfigError(
            f"{source}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        ) from None
    try:
        if kind == "TOML":
            document = tomllib.loads(text)
        else:
            document = json5.loads(text, object_pairs_hook=_object)
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        reason = _reason(str(exc))
        raise WranglerConfigError(
            _one_line(_where(source, str(exc)), [f"not valid {kind}: {reason}"])
        ) from None
    except RecursionError:
        raise WranglerConfigError(f"{source}: not valid {kind}: nested too deeply") from None
    if not isinstance(document, dict):
        raise WranglerConfigError(f"{source}: the top level must be a table/object")
    repeated = list(_repeated_keys(document, ""))
    if repeated:
        raise WranglerConfigError(_one_line(source, repeated))
    return document


# Where a parser says it stopped: tomllib "... (at line 3, column 9)", json5 "<string>:3
# Unexpected ... at column 9".
_TOML_AT = re.compile(r" \(at line (\d+), column (\d+)\)$")
_JSON_AT = re.compile(r"^<string>:(\d+) (.*) at column (\d+)$", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _where(source: Path, message: str) -> str:
    if found := _TOML_AT.search(message):
        return f"{source}:{found[1]}:{found[2]}"
    if found := _JSON_AT.match(message):
        return f"{source}:{found[1]}:{found[3]}"
    return str(source)


def _reason(message: str) -> str:
    if found := _JSON_AT.match(message):
        return found[2]
    if message.startswith("Empty strings"):  # json5's words for an empty file
        return "the file is empty"
    return _TOML_AT.sub("", message).replace(" (at end of document)", " at the end")


class _RepeatedKeys(dict[str, Any]):
    """A JSON object that gives a key twice: json5 would keep the last value silently."""

    repeated: list[str]


def _object(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    repeated = []
    for key, value in pairs:
        if key in found:
            repeated.append(key)
        found[key] = value
    if not repeated:
        return found
    marked = _RepeatedKeys(found)
    marked.repeated = repeated
    return marked


def _repeated_keys(value: object, at: str) -> Iterator[str]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _repeated_keys(item, f"{at}[{index}]")
    elif isinstance(value, dict):
        for key in getattr(value, "repeated", ()):
            yield f"{_join(at, key)}: given more than once in the same table/object"
        for key, item in value.items():
            yield from _repeated_keys(item, _join(at, key))


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _one_line(path: str | Path, problems: list[str], most: int = 10) -> str:
    """`path: problem; path: problem` (the first `most` of them), for one error line:
    control characters (a newline the parser quotes, in a key) are escaped."""
    shown = problems[:most]
    if len(problems) > most:
        shown.append(f"and {len(problems) - most} more")
    line = f"{path}: " + f"; {path}: ".join(shown)
    return _CONTROL.sub(lambda found: repr(found[0])[1:-1], line)


def load_wrangler(path: str | Path, env: str | None = None) -> WranglerConfig:
    """Read `path` (for environment `env`, if given). `WranglerConfigError` for a file
    that does not parse, is badly shaped (a table where a list belongs, a consumer with no
    `queue`, ...) or gives a queue two consumers, naming each key path, and for an unknown
    environment. Values (ranges, numbers) are checked by `wrangler_problems`."""
    from .wrangler_schema import shape_problems  # pydantic, only when a file is read

    document = read_file(path)
    problems = shape_problems(document)
    if problems:
        raise WranglerConfigError(_one_line(path, problems))
    unsupported = [f"{key}: {OTHER_KEYS}" for key in document if key not in KNOWN_TOP | {"env"}]
    section = document
    if env is not None:
        envs = document.get("env", {})
        if env not in envs:
            known = ", ".join(sorted(envs)) or "none"
            raise WranglerConfigError(f"{path} has no environment {env!r} (it has: {known})")
        section = envs[env]
        unsupported += [f"env.{env}.{key}: {OTHER_KEYS}" for key in section if key not in KNOWN_TOP]
    elif document.get("env"):
        unsupported.append(
            f"env: environments {', '.join(sorted(document['env']))} not used "
            "(select one with --env)"
        )
    queues_doc = section.get("queues", {})
    crons_at = "triggers.crons"
    if env is not None and "triggers" in section:
        crons_at = f"env.{env}.triggers.crons"
    triggers = section.get("triggers", document.get("triggers", {}))
    unsupported += [
        f"{crons_at.removesuffix('.crons')}.{key}: not supported by taskflare"
        for key in triggers
        if key != "crons"
    ]
    clashes: list[str] = []
    where = "queues" if env is None else f"env.{env}.queues"
    queues = _queues(queues_doc, unsupported, where, clashes)
    if clashes:
        raise WranglerConfigError(_one_line(path, clashes))
    crons = list(triggers.get("crons", []))
    return WranglerConfig(str(path), env, queues, crons, unsupported, crons_at)


def _queues(
    doc: dict[str, Any], unsupported: list[str], where: str, clashes: list[str]
) -> list[WranglerQueue]:
    """The queues of a (well-shaped) `queues` table; entries that cannot both hold (two
    consumers of one queue) are added to `clashes`, naming both key paths."""
    found: dict[str, WranglerQueue] = {}
    for index, consumer in enumerate(doc.get("consumers", [])):
        name = consumer["queue"]
        at = f"{where}.consumers[{index}]"
        if name in found:  # Cloudflare: one consumer per queue (miniflare ERR_MULTIPLE_CONSUMERS)
            first = found[name].paths["queue"].removesuffix(".queue")
            clashes.append(
                f"{at}: a second consumer of queue {name!r} (the first is {first}); "
                "Cloudflare allows one consumer per queue"
            )
            continue
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
        name = producer["queue"]
        at = f"{where}.producers[{index}]"
        for key in producer:
            if key not in ("queue", "binding", "delivery_delay"):
                reason = WHY.get(key) or "not supported by taskflare"
                unsupported.append(f"{at}.{key}: {reason}")
        known = found.get(name) or WranglerQueue(name, paths={"queue": f"{at}.queue"})
        settings, paths = dict(known.settings), dict(known.paths)
        if "delivery_delay" in producer:  # the queue's default delay, as Cloudflare's
            earlier = paths.get("delivery_delay")
            if earlier and settings["delivery_delay"] != producer["delivery_delay"]:
                clashes.append(
                    f"{at}.delivery_delay: {producer['delivery_delay']!r} differs from "
                    f"{earlier} ({settings['delivery_delay']!r}); taskflare has one "
                    f"delivery_delay per queue, for every producer of {name!r}"
                )
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
