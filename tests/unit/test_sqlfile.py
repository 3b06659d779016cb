"""`backends.sqlfile`: named statements and numbered migrations read from package files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskflare.backends.sqlfile import load_migrations, load_queries, missing_versions


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable, empty package folder with a unique name."""
    name = f"tf_sqlpkg_{tmp_path.name.replace('-', '_')}"
    folder = tmp_path / name
    (folder / "migrations").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield folder
    sys.modules.pop(name, None)


def test_load_queries_splits_named_sections_and_drops_comment_lines(package: Path) -> None:
    (package / "queries.sql").write_text(
        "-- file header, ignored\n\n"
        "-- name: first\nSELECT 1;\n\n"
        "-- name: second\n-- a comment inside\nSELECT *\nFROM t\nWHERE x = :x;\n"
    )
    queries = load_queries(package.name)
    assert queries == {
        "first": "SELECT 1;",
        # Comments document the file; the statement sent to the database is compact.
        "second": "SELECT *\nFROM t\nWHERE x = :x;",
    }


def test_load_queries_refuses_a_name_defined_twice(package: Path) -> None:
    (package / "queries.sql").write_text("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="'a' is defined twice"):
        load_queries(package.name)


def test_load_queries_reads_another_file_name(package: Path) -> None:
    (package / "jobs.sql").write_text("-- name: only\nSELECT 3;\n")
    assert load_queries(package.name, "jobs.sql") == {"only": "SELECT 3;"}


def test_load_migrations_in_numeric_order(package: Path) -> None:
    migrations = package / "migrations"
    (migrations / "0002_second.sql").write_text("ALTER TABLE t ADD y;")
    (migrations / "0001_initial.sql").write_text("CREATE TABLE t (x);")
    (migrations / "README.md").write_text("not a migration")
    (migrations / "__init__.py").write_text("")
    found = load_migrations(package.name)
    assert [(m.version, m.name, m.sql) for m in found] == [
        (1, "initial", "CREATE TABLE t (x);"),
        (2, "second", "ALTER TABLE t ADD y;"),
    ]


@pytest.mark.parametrize("files", [["0001_a.sql", "0001_b.sql"], ["0002_b.sql"]])
def test_load_migrations_refuses_a_number_twice_or_no_first(
    package: Path, files: list[str]
) -> None:
    for name in files:
        (package / "migrations" / name).write_text("SELECT 1;")
    with pytest.raises(ValueError, match="distinct numbers"):
        load_migrations(package.name)


def test_a_number_still_free_is_allowed_and_reported_missing(package: Path) -> None:
    for name in ("0001_a.sql", "0003_c.sql"):
        (package / "migrations" / name).write_text("SELECT 1;")
    migrations = load_migrations(package.name)
    assert [m.version for m in migrations] == [1, 3]
    assert missing_versions(migrations, [1]) == [3]
    assert missing_versions(migrations, [1, 3]) == []


def test_the_sqlite_backend_files_load() -> None:
    queries = load_queries("taskflare.backends.sqlite")
    assert "message_claim_many" in queries and "message_insert" in queries
    migrations = load_migrations("taskflare.backends.sqlite")
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})


def test_a_statement_with_traced_parts_is_loaded_twice(package: Path) -> None:
    (package / "queries.sql").write_text(
        "-- name: insert\n"
        "INSERT INTO t (a{traced:, trace_context})\n"
        "VALUES (:a{traced:, :trace_context});\n"
    )
    assert load_queries(package.name) == {
        "insert": "INSERT INTO t (a)\nVALUES (:a);",
        "insert_traced": "INSERT INTO t (a, trace_context)\nVALUES (:a, :trace_context);",
    }


def test_untraced_inserts_do_not_name_the_trace_context_column() -> None:
    """An app that is not instrumented writes no trace context: its inserts are the ones
    without the column; only their `_traced` twins (and claims, dead-letter copies) name it."""
    from taskflare.backends.postgres.backend import _RAW_SQL as postgres
    from taskflare.backends.sqlite.sql import SQL as sqlite

    for queries, inserts in (
        (postgres, ["message_enqueue_many", "job_enqueue", "job_enqueue_plain"]),
        (sqlite, ["message_insert"]),
    ):
        for name in inserts:
            assert "trace_context" not in queries[name]
            assert "trace_context" in queries[f"{name}_traced"]


def test_a_part_is_shared_by_the_statements_that_name_it(package: Path) -> None:
    (package / "queries.sql").write_text(
        "-- name: a\n-- a comment naming {_visible} stays one comment line\n"
        "SELECT 1 FROM t WHERE {_visible};\n\n"
        "-- name: _visible\n-- rows a reader may see\n(state <> 'gone' AND x = :x)\n\n"
        "-- name: b\nSELECT 2 FROM t WHERE {_visible} AND y = 1;\n"
    )
    assert load_queries(package.name) == {
        "a": "SELECT 1 FROM t WHERE (state <> 'gone' AND x = :x);",
        "b": "SELECT 2 FROM t WHERE (state <> 'gone' AND x = :x) AND y = 1;",
    }


def test_a_part_not_defined_or_defined_twice_is_refused(package: Path) -> None:
    (package / "queries.sql").write_text("-- name: a\nSELECT {_nope};\n")
    with pytest.raises(ValueError, match="no part named '_nope'"):
        load_queries(package.name)
    (package / "jobs.sql").write_text("-- name: _p\n1\n-- name: _p\n2\n")
    with pytest.raises(ValueError, match="part '_p' is defined twice"):
        load_queries(package.name, "jobs.sql")
