"""Database URLs: which one an app uses, how it is shown, where a SQLite file lives."""

from __future__ import annotations

import os
import re
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
# more is hidden, never less.
_PASSWORD_CHAR = r"[^\s'\"&=]"
_USERINFO = re.compile(
    rf"(?P<head>[A-Za-z][A-Za-z0-9+.-]*{_COLON}{_SLASH}{_SLASH}[^@\s/?#&]*?{_COLON})"
    rf"(?P<secret>{_PASSWORD_CHAR}*?)(?P<tail>{_AT})(?!{_PASSWORD_CHAR}*{_AT})",
    re.IGNORECASE,
)
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
    percent-encoded, shown as `***`."""
    for pattern in (_USERINFO, _SECRET_PARAMETER):
        text = pattern.sub(
            lambda m: m["head"] + (REDACTED if m["secret"] else "") + m["tail"], text
        )
    return text


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
