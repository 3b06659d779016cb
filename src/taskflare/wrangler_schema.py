"""The shape of a wrangler file, checked before any of it is read: which keys are tables,
lists or strings, and which are required. Values within range (numbers, durations) are
`QueueConfig`'s to check; this module only makes sure the reader can walk the document.

Declared with pydantic (strict: `1` is not a string, `"5"` is not a list), imported only
when a wrangler file is read, so `import taskflare` does not pay for pydantic.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Shape(BaseModel):
    # Keys not declared here are kept: the reader lists them as not used, with why.
    model_config = ConfigDict(strict=True, extra="allow")


class _Consumer(_Shape):
    queue: str
    type: Literal["worker", "http_pull"] = "worker"
    dead_letter_queue: str | None = None


class _Producer(_Shape):
    queue: str
    binding: str | None = None


class _Queues(_Shape):
    consumers: list[_Consumer] = Field(default_factory=list)
    producers: list[_Producer] = Field(default_factory=list)


class _Triggers(_Shape):
    crons: list[str] = Field(default_factory=list)


class _Section(_Shape):
    queues: _Queues = Field(default_factory=_Queues)
    triggers: _Triggers = Field(default_factory=_Triggers)


class _File(_Section):
    env: dict[str, _Section] = Field(default_factory=dict)


TABLE = "must be a table/object"
LIST = "must be a list/array"
WHAT = {
    "missing": "required",
    "model_type": TABLE,
    "model_attributes_type": TABLE,
    "dict_type": TABLE,
    "list_type": LIST,
    "string_type": "must be a string",
}


def shape_problems(document: dict[str, Any]) -> list[str]:
    """One `key path: what is wrong` line per badly shaped value of `document` (a parsed
    wrangler file), in file order: `queues.consumers[0].queue: required`,
    `triggers.crons: must be a list/array, got '0 0 * * *'`. Empty if it is well shaped."""
    try:
        _File.model_validate(document)
    except ValidationError as exc:
        return [_problem(error) for error in exc.errors(include_url=False)]
    return []


def key_path(loc: tuple[str | int, ...]) -> str:
    """`("queues", "consumers", 0, "queue")` -> `queues.consumers[0].queue`."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f"{'.' if path else ''}{part}"
    return path


def described(value: object) -> str:
    """A short, file-like spelling of a value for a message: `'0 0 * * *'`, `1`, `true`,
    `null`, `a table/object`, `a list/array`."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, dict):
        return "a table/object"
    if isinstance(value, list):
        return "a list/array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(error: Any) -> str:
    where = key_path(tuple(error["loc"]))
    if error["type"] == "missing":
        return f"{where}: required"
    if error["type"] == "literal_error":
        what = f"must be {error['ctx']['expected']}"
    else:
        message = str(error["msg"])
        what = WHAT.get(error["type"], message[:1].lower() + message[1:])
    return f"{where}: {what}, got {described(error['input'])}"
