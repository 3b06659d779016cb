"""Database URLs: which one an app uses, how it is shown, where a SQLite file lives."""

from __future__ import annotations

import os
import re
from bisect import bisect_left
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from ..errors import InvalidDatabaseUrl

DEFAULT_DATABASE_URL = "sqlite:///taskflare.db"
DATABASE_URL_ENV = "TASKFLARE_DATABASE_URL"

# libpq connection parameters whose values are secrets, or point at them.
SECRET_PARAMETERS = frozenset(
    {
        "password",
        "passfile",
        "sslpassword",
        "sslkey",
        "sslcert",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "service",
        "servicefile",
    }
)
REDACTED = "***"
# taskflare's URL options whose value is itself a database URL (redacted the same way).
URL_PARAMETERS = frozenset({"listen_url"})


def resolve_database_url(url: str | None) -> str:
    """The URL given, else $TASKFLARE_DATABASE_URL, else the SQLite default."""
    if url:
        return url
    return os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


# A separator as written, percent-encoded once, or twice (a URL inside a URL's value).
_COLON, _AT, _SLASH = (rf"(?:{c}|%{h}|%25{h})" for c, h in ((":", "3A"), ("@", "40"), ("/", "2F")))
# `scheme://user:password@` anywhere in the text (a malformed URL's path, an option's
# value): the password runs to the last `@` before a space, a quote, `&` or `=`, so an
# `@`, `/`, `?` or `#` typed raw inside it (which ends it early for a URL parser: libpq
# then reads its end as the host) is hidden too, and so is its encoding; when unsure,
# more is hidden, never less. As one regular expression (kept in the tests as the
# reference) that search backtracks: quadratic in the text's length, minutes for an
# error message of 200 kB. `_hide_userinfo` finds the same spans in linear time.
_PASSWORD_CHAR = r"[^\s'\"&=]"
_SCHEME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+.-")
_SEPARATOR_AT = re.compile(rf"(?=({_COLON}{_SLASH}{_SLASH}))", re.IGNORECASE)
_COLON_AT = re.compile(rf"(?=({_COLON}))", re.IGNORECASE)
_AT_AT = re.compile(rf"(?=({_AT}))", re.IGNORECASE)
_NOT_PASSWORD = re.compile(r"[\s'\"&=]")
_NOT_USER = re.compile(r"[@\s/?#&]")
# A password holding a character that ends it early in a URL (see `check_password`).
_CUT_PASSWORD = re.compile(
    rf"^[A-Za-z][A-Za-z0-9+.-]*://[^@\s/?#&:]*:(?P<secret>{_PASSWORD_CHAR}*)@"
)
# `password=...` (and the other secret parameters), raw or encoded, in a query or conninfo.
_SECRET_PARAMETER = re.compile(
    rf"(?P<head>(?:{'|'.join(sorted(SECRET_PARAMETERS))})(?:=|%3D|%253D))"
    r"(?P<secret>.*?)(?P<tail>&|%26|%2526|#|\s|$)",
    re.IGNORECASE,
)


def split_database_url(url: str) -> SplitResult:
    """`urlsplit(url)`, or `InvalidDatabaseUrl` (the URL shown redacted) for a URL it
    refuses: an unclosed `[`, a bracketed host that is no IP address. Python raises a
    bare `ValueError` there, which reached users as a traceback."""
    try:
        return urlsplit(url)
    except ValueError as exc:
        # Python's reason quotes what stands between the brackets, or the whole netloc:
        # part of a password, maybe. Say what is wrong without it.
        reason = (
            "a '[' or ']' in it does not enclose an IPv6 address (write a host as [::1]; "
            "percent-encode '[' and ']' in a password as %5B and %5D)"
            if "IPv" in str(exc)
            else "it holds characters a URL cannot have"
        )
        raise InvalidDatabaseUrl(
            f"database URL {redact_url(url)!r} is not a URL: {reason}", fields=("database_url",)
        ) from None


def hide_credentials(text: str) -> str:
    """`text` (a URL, an error message, a conninfo string) with every
    `scheme://user:password@` and `password=...` in it, however placed or
    percent-encoded, shown as `***`. Linear in the length of `text`."""
    return _SECRET_PARAMETER.sub(
        lambda m: m["head"] + (REDACTED if m["secret"] else "") + m["tail"],
        _hide_userinfo(text),
    )


def _hide_userinfo(text: str) -> str:
    """Each `scheme://user:password@` of `text` with its password as `***`: a scheme
    (letters first), `://`, a user up to the first `:` whose password reaches an `@`
    (separators raw or percent-encoded once or twice), the password up to the last `@`
    before a space, quote, `&` or `=`. Every position is looked at a bounded number of
    times (sorted positions and bisection, no backtracking)."""
    separators = [(m.start(), m.end(1)) for m in _SEPARATOR_AT.finditer(text)]
    if not separators:
        return text
    ats = [(m.start(), m.end(1)) for m in _AT_AT.finditer(text)]
    at_starts = [a for a, _ in ats]
    stops = [m.start() for m in _NOT_PASSWORD.finditer(text)]
    user_stops = [m.start() for m in _NOT_USER.finditer(text)]
    end = len(text)
    # Each `:` that opens a password: one whose run of password characters holds an `@`
    # (the password ends at the last one). Which `:` a `://` uses depends only on this.
    openers: list[tuple[int, int, int]] = []  # (start of `:`, its end, index in `ats`)
    for found in _COLON_AT.finditer(text):
        colon_end = found.end(1)
        k = bisect_left(stops, colon_end)
        run_end = stops[k] if k < len(stops) else end
        last = bisect_left(at_starts, run_end) - 1
        if last >= 0 and at_starts[last] >= colon_end:
            openers.append((found.start(), colon_end, last))
    opener_starts = [o[0] for o in openers]
    out: list[str] = []
    done = 0
    for start, sep_end in separators:
        if start < done or not _has_scheme(text, start, done):
            continue
        k = bisect_left(opener_starts, sep_end)
        if k == len(openers):
            break
        colon, colon_end, last = openers[k]
        u = bisect_left(user_stops, sep_end)
        if colon >= (user_stops[u] if u < len(user_stops) else end):
            continue  # the user part would hold an `@`, a space, `/`, `?`, `#` or `&`
        at, at_end = ats[last]
        out += (text[done:colon_end], REDACTED if at > colon_end else "", text[at:at_end])
        done = at_end
    out.append(text[done:])
    return "".join(out)


def _has_scheme(text: str, separator: int, limit: int) -> bool:
    """Whether a scheme (a letter, then letters, digits, `+`, `.`, `-`) ends at
    `separator` and starts at or after `limit` (the end of the previous match)."""
    letter = False
    i = separator - 1
    while i >= limit and text[i] in _SCHEME_CHARS:  # stops at the previous separator
        letter = letter or text[i].isalpha()  # an ASCII letter: it is a scheme character
        i -= 1
    return letter


def check_password(url: str, what: str = "database URL") -> None:
    """`InvalidDatabaseUrl` (the URL shown with its password hidden) when the password
    of `url` holds a raw `@`, `/`, `?` or `#`: a URL parser (libpq's too) ends the
    password, or the host, at it and reads the rest as the host, port or database,
    which its errors then show (`could not translate host name "ss@db"`)."""
    found = _CUT_PASSWORD.match(url)
    if found is not None and re.search(r"[@/?#]", found["secret"]):
        raise InvalidDatabaseUrl(
            f"the password in {what} {redact_url(url)!r} holds a raw '@', '/', '?' or '#', "
            "which a URL reads as the end of the password: percent-encode it "
            "('@' as %40, '/' as %2F, '?' as %3F, '#' as %23)",
            fields=("database_url",),
        )


def redact_url(url: str) -> str:
    """The URL with every credential replaced by `***`, for logs, errors and output.

    Covers a password in the netloc, the libpq parameters that carry a secret or
    name a file holding one (`password=`, `passfile=`, `sslkey=`, `service=`, ...), and
    the credentials of a URL given as an option's value (`listen_url=`); and then, in
    whatever is left (a malformed URL whose options ended up in its path, a value
    percent-encoded once or twice), any `scheme://user:password@` and `password=...`.
    """
    return hide_credentials(_redact_structure(url))


def _redact_structure(url: str) -> str:
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        secret_query = any(
            k.lower() in SECRET_PARAMETERS or (k in URL_PARAMETERS and redact_url(v) != v)
            for k, v in pairs
        )
        if (
            parts.password is None
            and ":" not in parts.netloc.rpartition("@")[0]
            and not secret_query
        ):
            return url
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}{':' + REDACTED if sep else ''}@{host}"
        query = parts.query
        if secret_query:
            query = urlencode([(k, _redact_value(k, v)) for k, v in pairs], safe="*")
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return f"{url.split(':', 1)[0]}://{REDACTED}"


def _redact_value(key: str, value: str) -> str:
    if key.lower() in SECRET_PARAMETERS:
        return REDACTED
    return redact_url(value) if key in URL_PARAMETERS else value


def sqlite_path(url: str) -> str:
    """The file path of a `sqlite:///relative.db` or `sqlite:////absolute.db` URL."""
    parts = split_database_url(url)
    path = url[len("sqlite://") :].split("?", 1)[0]
    if parts.netloc:
        raise InvalidDatabaseUrl(
            f"SQLite URL {redact_url(url)!r} has a host part; use sqlite:///relative.db or "
            "sqlite:////abs.db"
        )
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise InvalidDatabaseUrl(f"SQLite URL {redact_url(url)!r} names no file")
    return path


def database_shown(url: str) -> str:
    """The database as a start-up log line names it: the URL with its credentials
    redacted, and for a relative SQLite path the absolute file too, since a process
    started in another folder opens (and creates) another, empty file."""
    shown = redact_url(url)
    if not url.startswith("sqlite:"):
        return shown
    try:
        path = sqlite_path(url)
    except InvalidDatabaseUrl:
        return shown
    if path == ":memory:" or path.startswith("file:") or os.path.isabs(path):
        return shown
    return f"{shown} (file {os.path.abspath(path)})"
