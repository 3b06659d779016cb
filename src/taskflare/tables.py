"""Terminal tables that fit the terminal without cutting what a user copies.

Ids, numbers and states are never shortened (`…` in an id makes it useless); names and
free text wrap instead. When even that does not fit, the least important columns are
left out and the caption says which (`--json` always has every field).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

# id: copied by users, never cut or wrapped. word/number: short values (states, counts,
# times) never cut or wrapped. name: queue and job type names, folded onto more lines
# when narrow. text: errors and bodies, wrapped at spaces (folded inside long words).
Kind = Literal["id", "word", "number", "name", "text"]
TEXT_MIN = 12  # the narrowest a name or text column gets before columns are hidden


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header, its kind, and its rank (0 is never hidden; higher ranks
    are hidden first when the terminal is too narrow)."""

    header: str
    kind: Kind = "text"
    rank: int = 0


def _width(cell: str) -> int:
    return max((Text.from_markup(line).cell_len for line in cell.split("\n")), default=0)


def _min_width(column: Column, cells: Sequence[str]) -> int:
    longest = max((_width(c) for c in cells), default=0)
    if column.kind in ("id", "word", "number"):
        return max(longest, len(column.header))
    return min(max(longest, len(column.header)), TEXT_MIN)


def fit_table(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    caption: str | None = None,
) -> Table:
    """A rich `Table` of `rows` (cells may hold rich markup) for a terminal `width` wide
    (default: the console's). Shows every column that fits; names the hidden ones."""
    width = width or Console().width
    shown = list(range(len(columns)))
    minimum = [_min_width(c, [row[i] for row in rows]) for i, c in enumerate(columns)]

    def needed() -> int:  # the heavy box: a border and two spaces of padding per column
        return sum(minimum[i] + 3 for i in shown) + 1

    while needed() > width:
        droppable = [i for i in shown if columns[i].rank > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].rank, i)))
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]
    notes = [caption] if caption else []
    if hidden:
        notes.append(f"not shown at this width: {', '.join(hidden)} (--json has every field)")
    table = Table(title=title, caption="; ".join(notes) or None)
    for i in shown:
        column = columns[i]
        fixed = column.kind in ("id", "word", "number")
        table.add_column(
            column.header,
            justify="right" if column.kind == "number" else "left",
            no_wrap=fixed,
            min_width=minimum[i],
            overflow="fold",
        )
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table


def short_time(iso: str | None) -> str:
    """`2026-11-30T08:41:32.123Z` as `2026-11-30 08:41:32` (UTC); `-` for none."""
    if not iso:
        return "-"
    return iso.replace("T", " ")[:19]


def error_line(error: str | None, limit: int = 200) -> str:
    """The line of an error that says what happened (a traceback's last line), cut to
    `limit` characters; `-` for none."""
    lines = [line for line in (error or "").splitlines() if line.strip()]
    return lines[-1].strip()[:limit] if lines else "-"
