"""A command-line value that is not UTF-8 (bytes a shell passed: `$'\\xff'`) is a usage
error naming the argument, before the command touches anything; it used to reach the
database, which "refused a value" without saying which."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import typer

from taskflare.cli import cli, main
from taskflare.cli.arguments import TextCommand

from .cli_run import migrated, one_line_error, tf_many

# What Python makes of the byte 0xff in an argument (`surrogateescape`); a subprocess
# given it passes the byte itself.
FF = "\udcff"


def _leaves() -> dict[tuple[str, ...], Any]:
    """Every command of the CLI that runs something (not a group), by its path of names."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found[path] = command

    walk(typer.main.get_command(cli), ())
    from taskflare.cli.health import HEALTH_COMMAND

    found[("worker", "health")] = HEALTH_COMMAND
    return found


def _is_text(param: Any) -> bool:
    """Whether a parameter takes text (`str`, `list[str]`), not a number, flag or path."""
    described = getattr(param, "type_descriptor", None)  # Typer that vendors click
    if described is None:
        return getattr(param.type, "name", None) == "text"
    annotation = described.annotation
    return annotation is str or get_args(annotation) == (str,)


def test_a_byte_that_is_not_utf8_in_a_name_is_one_line_naming_the_argument(
    database_url: str, tmp_path: Path
) -> None:
    migrated(database_url)
    cases = [
        (["queues", "purge", FF, "--yes"], "NAME", "byte 0xff at byte 0 of '\\xff'"),
        (["queues", "info", f"emails{FF}"], "NAME", "byte 0xff at byte 6 of 'emails\\xff'"),
        (["send", f"caf\u00e9{FF}", "{}"], "QUEUE", "byte 0xff at byte 5 of 'caf\u00e9\\xff'"),
        (["jobs", "enqueue", f"t{FF}", "{}"], "TYPE", "byte 0xff at byte 1"),
        (["jobs", "list", "--queue", "a\udcc3"], "--queue", "byte 0xc3 at byte 1"),
        (["jobs", "enqueue", "t", "{}", "--idempotency-key", FF], "--idempotency-key", "0xff"),
        (["dlq", "reprocess", "work", "--id", "a", "--id", FF], "--id", "0xff"),
        (["namespaces", "get", "products", FF], "KEY", "0xff"),
        (["tail", "--type", FF], "--type", "0xff"),
        (["jobs", "cancel", FF], "JOB_ID", "0xff"),
        (["worker", "health", "--database-url", f"sqlite:///{FF}"], "--database-url", "0xff"),
    ]
    results = tf_many([args for args, _, _ in cases], url=database_url)
    for (args, name, where), result in zip(cases, results, strict=True):
        line = one_line_error(result, 2)
        assert line.startswith(f"error: {name} is not valid UTF-8: "), (args, line)
        assert where in line, (args, line)
    from_env = tf_many([["queues", "list"]], url=f"sqlite:///{tmp_path}/x{FF}.db")[0]
    line = one_line_error(from_env, 2)
    assert line.startswith("error: --database-url (from TASKFLARE_DATABASE_URL) is not valid"), line


def test_every_text_argument_of_every_command_is_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each command's each text argument or option, given a lone surrogate through the
    real entry point: exit 2 and the one line naming it, before the command runs."""
    checked = 0
    for path, command in sorted(_leaves().items()):
        assert isinstance(command, TextCommand), f"taskflare {' '.join(path)}: not a TextCommand"
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        for param in command.params:
            if not _is_text(param):
                continue
            args = [FF if p is param else "x" for p in arguments]
            if param.param_type_name == "option":
                args.append(f"{max(param.opts, key=len)}={FF}")
            with pytest.raises(SystemExit) as exited:
                main([*path, *args])
            err = capsys.readouterr().err.strip()
            assert exited.value.code == 2, (path, param.name, err)
            assert len(err.splitlines()) == 1 and " is not valid UTF-8: " in err, (path, err)
            checked += 1
    assert checked >= 40  # a walk that found nothing would prove nothing
