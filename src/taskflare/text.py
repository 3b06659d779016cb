"""Text that users control, checked at the API and cleaned before it is stored.

PostgreSQL cannot store a NUL character in a text column, and SQLite would; so that both
backends behave the same, names, keys and notes given to the API are refused when they
hold one (`check_text`), and texts made from what a handler raised (errors, tracebacks)
are cleaned (`clean_text`) so that storing an outcome can never fail because of them.
"""

from __future__ import annotations

import re

from .errors import InvalidMessage

NUL = "\x00"
# C0 controls and DEL: what the HTTP API refuses in a path, a query and its keys.
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A lone surrogate: a str can hold one (a JSON "\ud800", bytes decoded with
# surrogateescape), but no UTF-8 column, file or HTTP answer can.
SURROGATE = re.compile(r"[\ud800-\udfff]")


# The longest error text and traceback stored for an attempt (characters): a handler's
# exception may echo a whole HTTP answer or SQL statement, and each attempt keeps its own
# copy, read back by every job list and log line (Sidekiq keeps 10 000 of a message too).
MAX_ERROR_CHARS = 10_000
MAX_TRACEBACK_CHARS = 100_000


def clip(text: str, limit: int) -> str:
    """`text` if it has at most `limit` characters; else its first and last halves of
    `limit` around a line saying how many characters were cut (the start of an error
    names it, the end of a traceback says where it was raised)."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    cut = len(text) - limit
    return f"{text[:head]}\n[... {cut:,} characters cut ...]\n{text[-tail:]}"


def clean_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """`text` as every backend can store it: at most `limit` characters (`clip`), NUL
    characters replaced by the visible escape `\\x00`, and lone surrogates (which no
    UTF-8 column takes) by `\\udXXX`."""
    text = clip(text, limit)
    if NUL in text:
        text = text.replace(NUL, "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def check_text(value: object, field: str, *, max_length: int = 255) -> str:
    """A non-empty string of at most `max_length` characters without NUL or a lone
    surrogate; else `InvalidMessage` naming `field` (the name the caller used)."""
    if not isinstance(value, str) or not 0 < len(value) <= max_length:
        raise InvalidMessage(
            f"{field} must be a string of 1-{max_length} characters", fields=(field,)
        )
    if NUL in value:
        raise InvalidMessage(f"{field} must not contain a NUL character (\\x00)", fields=(field,))
    lone = SURROGATE.search(value)
    if lone is not None:
        raise InvalidMessage(
            f"{field} holds a lone surrogate (U+{ord(lone.group()):04X}), which is not text "
            "UTF-8 can store",
            fields=(field,),
        )
    return value


def check_name(value: object, field: str, *, max_length: int = 255) -> str:
    """`check_text` for a key or a name (a job type, an idempotency key, a correlation id,
    a batch id): no control character at all (NUL, tab, newline, the other C0
    characters, DEL), as the HTTP API refuses them, so that every way in stores the same
    keys and each can be looked up over HTTP; else `InvalidMessage` naming `field`."""
    text = check_text(value, field, max_length=max_length)
    found = CONTROL.search(text)
    if found is not None:
        raise InvalidMessage(
            f"{field} holds a control character (U+{ord(found.group()):04X}); keys cannot",
            fields=(field,),
        )
    return text
