"""Array parameters written as PostgreSQL array literals.

Every outcome write and enqueue passes its rows as parallel arrays (`unnest(%(ids)s::text[],
...)`). psycopg adapts a Python list element by element (a type lookup and a dumper call
per element); building the array's text form here is several times cheaper per
statement, and the statements cast each parameter to its array type anyway
(`'{"a","b"}'::text[]`).

The literal syntax is PostgreSQL's (https://www.postgresql.org/docs/current/arrays.html,
"Array Value Input"): text elements double-quoted with `\\` and `"` escaped, `NULL`
unquoted, `bytea` values in hex form (`\\x0a0b`, its backslash escaped), booleans
`t`/`f`, numbers as Python writes them (`inf` and `nan` included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bytes(data: bytes) -> str:
    return '"\\\\x' + data.hex() + '"'


_ELEMENT: dict[type, Callable[[Any], str]] = {
    str: _quote,
    type(None): lambda _: "NULL",
    bool: lambda flag: "t" if flag else "f",
    int: int.__repr__,
    float: float.__repr__,
    bytes: _bytes,
}


# The literal of a list whose elements are all of one type, one pass in C (TypeError
# when one is not). A bool among ints is written 1 or 0, which a boolean[] reads too.
_WHOLE: dict[type, Callable[[Sequence[Any]], str]] = {
    bytes: lambda values: '{"\\\\x' + '","\\\\x'.join(map(bytes.hex, values)) + '"}',
    float: lambda values: "{" + ",".join(map(float.__repr__, values)) + "}",
    int: lambda values: "{" + ",".join(map(int.__repr__, values)) + "}",
}


def array_literal(values: Sequence[Any]) -> str:
    """The array literal of `values` (str, bytes, bool, int, float or None elements).

    Raises `TypeError` for any other element type; the caller's SQL casts the literal
    to the array's element type.
    """
    if not values:
        return "{}"
    try:
        probe = "".join(values)  # every element a str: the common case, one pass in C
    except TypeError:
        pass
    else:
        if "\\" not in probe and '"' not in probe:
            return '{"' + '","'.join(values) + '"}'
    if values[0] is None and values.count(None) == len(values):
        return "{" + ",".join(["NULL"] * len(values)) + "}"  # all NULL (unused columns)
    whole = _WHOLE.get(type(values[0]))
    if whole is not None:
        try:
            return whole(values)  # every element of the first one's type
        except TypeError:
            pass
    try:
        return "{" + ",".join([_ELEMENT[type(value)](value) for value in values]) + "}"
    except KeyError as exc:
        raise TypeError(
            f"cannot write {exc.args[0].__name__} into a PostgreSQL array literal"
        ) from None


def adapt_arrays(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with every list or tuple value replaced by its array literal (in place)."""
    for key, value in params.items():
        if isinstance(value, (list, tuple)):
            params[key] = array_literal(value)
    return params
