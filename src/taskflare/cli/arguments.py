"""Command-line values that are not text: refused by the argument's name before a command
runs, instead of failing deep inside it (a queue name the database "refused")."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand

# How much of a refused value the error shows (a payload can be megabytes).
SHOWN_CHARS = 60


class TextCommand(TyperCommand):
    """A command whose text arguments and options must be valid UTF-8.

    Python gives a command-line argument (or environment variable) holding bytes that
    are not UTF-8 as a `str` with lone surrogates (`surrogateescape`): no name, key,
    URL or JSON text can hold one. Such a value is a usage error (exit 2) naming the
    argument (`NAME`, `--queue`, `--database-url (from TASKFLARE_DATABASE_URL)`) and
    the first byte at fault. Paths (`--from-file`) are not text and may hold any bytes.
    """

    def invoke(self, ctx: Any) -> Any:
        for param in self.params:
            value = ctx.params.get(param.name or "")
            values = value if isinstance(value, (list, tuple)) else (value,)
            for item in values:
                if isinstance(item, str) and (problem := not_utf8(item)) is not None:
                    typer.secho(
                        f"error: {param_name(ctx, param)} is not valid UTF-8: {problem}",
                        fg=typer.colors.RED,
                        err=True,
                    )
                    raise typer.Exit(2)
        return super().invoke(ctx)


def param_name(ctx: Any, param: Any) -> str:
    """An argument as the command's usage names it (`NAME`), an option by its long
    flag (`--queue`), and the environment variable when the value came from one."""
    if param.param_type_name == "argument":
        name = str(param.metavar or (param.name or "").upper())
    else:
        name = max(param.opts, key=len)
    source = ctx.get_parameter_source(param.name)
    if source is not None and source.name == "ENVIRONMENT" and param.envvar:
        envvar = param.envvar if isinstance(param.envvar, str) else param.envvar[0]
        name += f" (from {envvar})"
    return name


def not_utf8(value: str) -> str | None:
    """None when `value` is text UTF-8 can carry; else where it is not, as one phrase:
    `byte 0xff at byte 4 of 'logs\\xff'` (a byte the shell passed that is not UTF-8), or
    `a lone surrogate U+D800 at byte 2 of 'ab\\ud800'` (from a caller in Python)."""
    at = next((i for i, char in enumerate(value) if "\ud800" <= char <= "\udfff"), None)
    if at is None:
        return None
    offset = len(value[:at].encode("utf-8"))  # nothing before `at` is a surrogate
    code = ord(value[at])
    what = (
        f"byte 0x{code - 0xDC00:02x}"
        if 0xDC80 <= code <= 0xDCFF
        else f"a lone surrogate U+{code:04X}"
    )
    return f"{what} at byte {offset} of {_shown(value)}"


def _shown(value: str) -> str:
    """`value` quoted for one line of an error, cut to `SHOWN_CHARS`: a byte that is not
    UTF-8 as `\\xff`, a lone surrogate as `\\ud800`, a control character escaped."""
    parts = []
    for char in value[:SHOWN_CHARS]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # how `surrogateescape` keeps an undecodable byte
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            parts.append(f"\\u{code:04x}")
        else:
            parts.append(char if char.isprintable() else repr(char)[1:-1])
    return "'" + "".join(parts) + ("...'" if len(value) > SHOWN_CHARS else "'")
