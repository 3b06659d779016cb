"""The loader runs an app module once: however it is reached, there is one `App`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from taskflare.errors import AppLoadError

APP = """
from taskflare import App
app = App("sqlite:///{db}")
emails = app.queue("emails")
RUNS = globals().get("RUNS", 0) + 1
"""

PRODUCER = """
from {module} import app as imported_app, emails

async def producer(app):
    assert app is imported_app
    await emails.send({{"n": 1}})
"""


def run_python(code: str, cwd: Path) -> str:
    """Run `code` in a fresh interpreter (the loader's cache is per process)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_file_loaded_by_path_and_imported_by_name_is_one_module(tmp_path: Path) -> None:
    (tmp_path / "shop_app.py").write_text(APP.format(db=tmp_path / "a.db"))
    (tmp_path / "shop_producer.py").write_text(PRODUCER.format(module="shop_app"))
    out = run_python(
        f"""
        import sys
        from taskflare.loader import load_object
        app = load_object("{tmp_path}/shop_app.py:app")
        again = load_object("{tmp_path}/shop_app.py:app")
        produce = load_object("{tmp_path}/shop_producer.py:producer")
        import shop_app
        print(app is again is shop_app.app, shop_app.RUNS, produce.__module__)
        """,
        cwd=Path("/"),
    )
    assert out == "True 1 shop_producer"


def test_a_file_inside_a_package_is_imported_under_its_dotted_name(tmp_path: Path) -> None:
    package = tmp_path / "src" / "shop"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(APP.format(db=tmp_path / "a.db"))
    (package / "produce.py").write_text(PRODUCER.format(module="shop.tasks"))
    out = run_python(
        f"""
        from taskflare.loader import load_object
        app = load_object("{package}/tasks.py:app")
        by_name = load_object("shop.tasks:app")
        load_object("{package}/produce.py:producer")
        import shop.tasks
        print(app is by_name is shop.tasks.app, shop.tasks.RUNS, shop.tasks.__name__)
        """,
        cwd=tmp_path,
    )
    assert out == "True 1 shop.tasks"


def test_a_file_whose_name_is_no_identifier_still_runs_once(tmp_path: Path) -> None:
    (tmp_path / "my-app.py").write_text(APP.format(db=tmp_path / "a.db"))
    out = run_python(
        f"""
        from taskflare.loader import load_object
        first = load_object("{tmp_path}/my-app.py:app")
        print(first is load_object("{tmp_path}/my-app.py:app"))
        """,
        cwd=Path("/"),
    )
    assert out == "True"


def test_a_file_that_fails_to_import_is_one_line_naming_it(tmp_path: Path) -> None:
    from taskflare.loader import load_object

    (tmp_path / "broken_tf_app.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(AppLoadError, match=r"cannot load app .*broken_tf_app.py:app.*boom"):
        load_object(f"{tmp_path}/broken_tf_app.py:app")
    with pytest.raises(AppLoadError, match="no file"):
        load_object(f"{tmp_path}/missing.py:app")
