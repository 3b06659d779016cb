"""Named SQL statements and numbered migrations, read once from a backend's package files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\S+)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{4})_(\w+)\.sql$")
_TRACED = re.compile(r"\{traced:([^{}]*)\}")
_PART = re.compile(r"\{(_\w+)\}")


def compact(statement: str) -> str:
    """A statement as sent to the database: comment lines dropped, lines stripped (the
    comments document the file; the driver need not parse them on every execution, and a
    short text stays in the driver's cache of converted queries)."""
    lines = (line.strip() for line in statement.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("--"))


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    """Split a file of `-- name: x` sections into {name: statement} (compacted).

    A statement with `{traced:...}` parts is loaded twice: `x` without those parts and
    `x_traced` with their text (the trace context column of an enqueue made while tracing
    is on), so an untraced enqueue sends exactly the statement it sent before tracing
    existed.

    A section whose name starts with `_` is a part shared by statements, not a statement:
    `{_name}` in a statement stands for its text (defined anywhere in the file).
    `ValueError` for a name defined twice or a part not defined."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    sections = list(zip(parts[1::2], parts[2::2], strict=True))
    shared: dict[str, str] = {}
    for name, body in sections:
        if name[0] == "_":
            if name in shared:
                raise ValueError(f"{package}/{filename}: part {name!r} is defined twice")
            shared[name] = compact(body).rstrip(";")

    def part(match: re.Match[str]) -> str:
        if match.group(1) not in shared:
            raise ValueError(f"{package}/{filename}: no part named {match.group(1)!r}")
        return shared[match.group(1)]

    queries: dict[str, str] = {}
    for name, section in sections:
        if name[0] == "_":
            continue
        # Parts go into the compacted text: a comment that names one stays a comment.
        variants = {name: _PART.sub(part, compact(_TRACED.sub("", section)))}
        if _TRACED.search(section):
            variants[f"{name}_traced"] = _PART.sub(part, compact(_TRACED.sub(r"\1", section)))
        for key, value in variants.items():
            if key in queries:
                raise ValueError(f"{package}/{filename}: statement {key!r} is defined twice")
            queries[key] = value
    return queries


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change."""

    version: int
    name: str
    sql: str


def load_migrations(package: str) -> list[Migration]:
    """Every `NNNN_name.sql` file of a backend's migrations folder, in order."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    # Numbers are handed out to pieces of work ahead of time, so a number may still be
    # free when a later one lands: gaps are allowed, two files with one number are not.
    # A database is current when it has every version here (see `missing_versions`).
    if not versions or versions[0] != 1 or len(set(versions)) != len(versions):
        raise ValueError(
            f"{package}: migrations must start at 0001 and have distinct numbers: {versions}"
        )
    return found


def missing_versions(migrations: list[Migration], applied: list[int]) -> list[int]:
    """The versions of `migrations` a database with `applied` versions has not got."""
    done = set(applied)
    return [m.version for m in migrations if m.version not in done]
