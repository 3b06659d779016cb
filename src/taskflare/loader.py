"""Import an app given as 'package.module:attr' or 'path/to/file.py:attr'.

A module is executed once per process, however it is reached: a file given by path is
imported under the dotted name Python itself would give it (its package folders, found
by their `__init__.py`, then the file's stem), so `import myapp` in another module, or a
second `load_object("myapp.py:producer")`, finds the same module and the same `App`
instead of running the file again and declaring a second one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import AppLoadError
from .raised import message_of


def load_object(spec: str) -> Any:
    """Import `module:attr` (or `file.py:attr`) and return the attribute.

    Raises `AppLoadError` (one line: the spec and what went wrong) when the module cannot
    be found or imported or has no such attribute.
    """
    module_part, sep, attr = spec.partition(":")
    if not sep or not module_part or not attr:
        raise AppLoadError(f"app must be given as 'module:attribute', got {spec!r}")
    if module_part.endswith(".py") or "/" in module_part:
        module = _load_file(spec, module_part)
    else:
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")
        module = _import(module_part, f"cannot import {module_part!r}")
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_part!r} has no attribute {attr!r}") from None
    return obj


def raised_at(exc: BaseException) -> str:
    """Where `exc` was raised in the user's code, as 'file:line' ('' if unknown).

    The innermost frame outside Python's import machinery and taskflare (for a
    `SyntaxError`, the offending line of the file being compiled); the file is relative
    to the current folder when inside it.
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown(exc.filename)}:{exc.lineno}"
    ours = str(Path(__file__).parent)
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and not frame.filename.startswith(("<frozen", ours))
    ]
    return f"{_shown(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""


def _shown(filename: str) -> str:
    """`filename` relative to the current folder when it is inside it."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return filename


def describe_raised(exc: BaseException) -> str:
    """`Type: message (at file:line)`: one line saying what the user's code raised, where."""
    at = raised_at(exc)
    return f"{type(exc).__name__}: {message_of(exc)}" + (f" (at {at})" if at else "")


def module_name_for(path: Path) -> tuple[Path, str]:
    """The folder to put on `sys.path` and the dotted name under which `path` imports.

    `src/shop/tasks.py` with `src/shop/__init__.py` is `shop.tasks` from `src/`; a file
    outside any package is its stem, from its own folder.
    """
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.name.isidentifier():
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, ".".join(parts)


def _load_file(spec: str, module_part: str) -> ModuleType:
    path = Path(module_part).resolve()
    if not path.is_file():
        raise AppLoadError(f"cannot load app {spec!r}: no file {module_part}")
    root, name = module_name_for(path)
    if all(part.isidentifier() for part in name.split(".")):
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        loaded = sys.modules.get(name)
        if loaded is not None and _same_file(loaded, path):
            return loaded
        if loaded is None:
            module = _import(name, f"cannot load app {spec!r}")
            if _same_file(module, path):
                return module
        # Another module already holds the name: load this file under its path instead.
    return _exec_file(spec, path)


def _same_file(module: ModuleType, path: Path) -> bool:
    location = getattr(module, "__file__", None)
    return location is not None and Path(location).resolve() == path


_BY_PATH: dict[Path, ModuleType] = {}


def _exec_file(spec: str, path: Path) -> ModuleType:
    """Run a file whose name cannot be imported (`my-app.py`), once per process."""
    if path in _BY_PATH:
        return _BY_PATH[path]
    name = f"taskflare_app_{abs(hash(str(path))):x}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise AppLoadError(f"cannot load app {spec!r}: not a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    _BY_PATH[path] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name], _BY_PATH[path]
        raise AppLoadError(f"cannot load app {spec!r}: {describe_raised(exc)}") from exc
    return module


def _import(name: str, failure: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise AppLoadError(f"{failure}: {describe_raised(exc)}") from exc
