"""Result rows of a named statement, mapped onto records by column name.

Every `SELECT` list and `RETURNING` clause names its columns as the record's fields, so
adding a field means adding a column where it is read, in any order; a column that is
not a field of the record is an error, found the first time the statement runs.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import starmap
from typing import Any, TypeVar, cast

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rows:
    """What a statement returned: its column names and its rows."""

    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    rowcount: int = -1

    def __len__(self) -> int:
        return len(self.rows)

    def into(self, record: type[T]) -> list[T]:
        """Every row as a `record` (a dataclass), fields filled by column name."""
        if _in_field_order(cast(Hashable, record), self.columns):
            return list(starmap(record, self.rows))  # no Python call per row
        build: Callable[[Sequence[Any]], T] = _builder(cast(Hashable, record), self.columns)
        return [build(row) for row in self.rows]

    def first(self, record: type[T]) -> T | None:
        """The first row as a `record`, or None when there is none."""
        if not self.rows:
            return None
        build: Callable[[Sequence[Any]], T] = _builder(cast(Hashable, record), self.columns)
        return build(self.rows[0])

    def pairs(self) -> list[tuple[str, str]]:
        """The first two columns of every row, as strings (id → state maps)."""
        return [(str(row[0]), str(row[1])) for row in self.rows]

    def dicts(self) -> list[dict[str, Any]]:
        """Every row as a dict keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        return self.rows[0][0] if self.rows else None


@cache
def _in_field_order(key: Hashable, columns: tuple[str, ...]) -> bool:
    """Whether rows of `columns` build `key` (a dataclass) positionally as they are: the
    columns are its first fields in order, and none is a bool SQLite gives as 0/1."""
    record = cast(type[Any], key)
    names = tuple(f.name for f in dataclasses.fields(record))
    if columns != names[: len(columns)]:
        return False
    hints = typing.get_type_hints(record)
    return not any(hints[c] in (bool, bool | None) for c in columns)


@cache
def _builder(key: Hashable, columns: tuple[str, ...]) -> Callable[[Sequence[Any]], Any]:
    record = cast(type[Any], key)
    fields = {f.name: f for f in dataclasses.fields(record)}
    unknown = [c for c in columns if c not in fields]
    if unknown:
        raise TypeError(f"columns {unknown} are not fields of {record.__name__}")
    hints = typing.get_type_hints(record)
    # SQLite has no boolean type: its 0/1 become bools where the record says bool.
    booleans = {i for i, c in enumerate(columns) if hints[c] in (bool, bool | None)}
    if not booleans:
        if columns == tuple(fields)[: len(columns)]:
            return lambda row: record(*row)  # columns in field order: positional is fastest
        positional = _positional(record, fields, columns)
        if positional is not None:
            return positional
        return lambda row: record(**dict(zip(columns, row, strict=True)))

    def build(row: Sequence[Any]) -> Any:
        values = {
            c: (bool(v) if i in booleans and v is not None else v)
            for i, (c, v) in enumerate(zip(columns, row, strict=True))
        }
        return record(**values)

    return build


def _positional(
    record: type[Any], fields: dict[str, dataclasses.Field[Any]], columns: tuple[str, ...]
) -> Callable[[Sequence[Any]], Any] | None:
    """A builder passing the columns positionally in field order, the fields between them
    that no column names getting their defaults (None when one of those has none)."""
    names = tuple(fields)
    used = names[: 1 + max((names.index(c) for c in columns), default=0)]
    gaps = [n for n in used if n not in columns]
    if (
        len(used) < 2
        or any(fields[n].default is dataclasses.MISSING for n in gaps)
        or not all(fields[n].init and not fields[n].kw_only for n in used)
    ):
        return None
    pad = tuple(fields[n].default for n in gaps)
    where = {c: i for i, c in enumerate(columns)}
    where.update({n: len(columns) + i for i, n in enumerate(gaps)})
    pick = operator.itemgetter(*(where[n] for n in used))
    return lambda row: record(*pick((*row, *pad)))
