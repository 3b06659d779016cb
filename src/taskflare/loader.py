"""Import an app given as 'package.module:attr' or 'path/to/file.py:attr'."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .errors import AppLoadError


def load_object(spec: str) -> Any:
    """Import `module:attr` (or `file.py:attr`) and return the attribute."""
    module_part, sep, attr = spec.partition(":")
    if not sep or not module_part or not attr:
        raise AppLoadError(f"app must be given as 'module:attribute', got {spec!r}")
    if module_part.endswith(".py") or "/" in module_part:
        path = Path(module_part).resolve()
        if not path.is_file():
            raise AppLoadError(f"cannot load app {spec!r}: no file {module_part}")
        name = path.stem
        sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise AppLoadError(f"cannot load app {spec!r}: not a Python file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise AppLoadError(f"cannot load app {spec!r}: {type(exc).__name__}: {exc}") from exc
    else:
        if "" not in sys.path and "." not in sys.path:
            sys.path.insert(0, "")
        try:
            module = importlib.import_module(module_part)
        except Exception as exc:
            raise AppLoadError(
                f"cannot import {module_part!r}: {type(exc).__name__}: {exc}"
            ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(f"module {module_part!r} has no attribute {attr!r}") from None
    return obj
