"""taskflare beside its Python peers (pgqueuer, procrastinate, huey), in one run.

    python benchmarks/compare.py [--runs 3] [--only ROW,...] [--baseline-ref GITREF]
                                 [--scale 1.0] [--out benchmarks/RESULTS-peers.md]

Each measure runs in fresh processes (a client, plus a worker process where there is one)
on a fresh database: a new PostgreSQL database on $BENCH_POSTGRES_URL's server, or a new
SQLite file in a temporary directory. A round runs every measure of every subject, one
measure at a time, subjects in alternating order, so machine noise hits all alike; the
report gives medians over rounds and every per-round value. Needs the `bench` extra:
`.venv/bin/pip install -e '.[bench]'`. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from peers.table import ROWS, Round, needed, render

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MEASURES = ("enqueue", "bulk", "floor", "drain", "pickup")  # the floor runs right before drains
RUN_TIMEOUT = 480.0  # seconds for one measure, pre-enqueue and worker included
PACKAGES = ("taskflare", "pgqueuer", "procrastinate", "huey", "asyncpg", "psycopg", "uvloop")


@dataclass(frozen=True)
class Subject:
    """What a run measures: an adapter in `peers/` (or the floor loop), on one engine."""

    key: str
    adapter: str  # peers/<adapter>_peer.py, or "physical"
    backend: str  # postgres | sqlite
    variant: str = ""  # taskflare: jobs | messages
    python: str = sys.executable


def subject(key: str, pythons: dict[str, str]) -> Subject:
    """The subject a key of the table names: a peer, 'floor <pg|sqlite>', or
    '<taskflare label> <jobs|messages> <pg|sqlite>'."""
    if key in ("pgqueuer", "procrastinate"):
        return Subject(key, key, "postgres")
    if key == "rawpg":
        return Subject(key, "rawpg", "postgres")
    if key == "huey":
        return Subject(key, "huey_sqlite", "sqlite")
    *words, engine = key.split(" ")
    backend = "postgres" if engine == "pg" else "sqlite"
    if words == ["floor"]:
        return Subject(key, "physical", backend)
    label, variant = words
    return Subject(key, "taskflare", backend, variant, pythons[label])


# -- fresh databases and processes ------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A new, empty database URL; dropped (or deleted) afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="taskflare-peers-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"tfpeers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        # `$BENCH_URL_QUERY` adds URL options ({db}: the new database's name), e.g. the
        # options a PgBouncer in front of the server needs (benchmarks/remote.py).
        query = os.environ.get("BENCH_URL_QUERY", "").replace("{db}", name)
        yield urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{name}", query=query))
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def run_measure(who: Subject, measure: str, scale: float) -> dict[str, Any]:
    """One measure in a new process group (client and worker), killed if it overruns."""
    module = ["peers.physical"] if measure == "floor" else ["peers.client", who.adapter, measure]
    with fresh_database(who.backend) as url, tempfile.TemporaryDirectory() as tmp:
        out, log = Path(tmp, "out.json"), Path(tmp, "log.txt")
        env = {
            **os.environ,
            "PYTHONPATH": str(BENCH_DIR),
            "PB_DATABASE_URL": url,
            "PB_VARIANT": who.variant,
            "PB_SCALE": str(scale),
        }
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [who.python, "-m", *module, str(out)],
                cwd=BENCH_DIR,
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code: int | str = proc.wait(RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                code = f"killed after {RUN_TIMEOUT:.0f} s"
            with contextlib.suppress(ProcessLookupError):  # the group it made: strays too
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if out.exists():
            return json.loads(out.read_text())  # type: ignore[no-any-return]
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        print("\n".join(f"    | {line}" for line in tail), flush=True)
        return {"error": f"exit {code}: {tail[-1] if tail else 'no output'}"}


@contextlib.contextmanager
def baseline(ref: str) -> Iterator[tuple[str, str]]:
    """taskflare at `ref`: a git worktree installed into a venv of its own, both removed after.

    Yields (python of that venv, short commit)."""
    sha = git("rev-parse", "--short", "--verify", "--quiet", f"{ref}^{{commit}}")
    if not sha:
        raise SystemExit(f"--baseline-ref {ref!r} names no commit")
    tmp = Path(tempfile.mkdtemp(prefix="taskflare-baseline-"))
    tree = tmp / "tree"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), sha], check=True
    )
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
        python = str(tmp / "venv" / "bin" / "python")
        pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, str(tree)], check=True)
        yield python, sha
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(tmp, ignore_errors=True)


# -- the run ----------------------------------------------------------------------------------


def git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return done.stdout.strip()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error']}"
    keys = ("jobs_s", "p50_ms", "p95_ms", "claim_ack_jobs_s")
    return ", ".join(f"{k}={result[k]:,.2f}" for k in keys if k in result)


def run_rounds(
    plan: list[tuple[Subject, str]], runs: int, scale: float
) -> tuple[list[Round], list[str]]:
    """Every (subject, measure) once a round; returns the rounds and a line of load per round."""
    rounds: list[Round] = []
    load_lines = []
    for number in range(1, runs + 1):
        results: Round = {}
        before, started, t0 = loadavg(), dt.datetime.now(dt.UTC), time.monotonic()
        for measure in MEASURES:
            batch = [who for who, m in plan if m == measure]
            for who in batch if number % 2 else reversed(batch):
                t = time.monotonic()
                results[(who.key, measure)] = result = run_measure(who, measure, scale)
                print(
                    f"round {number} {measure:<7} {who.key:<28} {summary(result)}"
                    f"  ({time.monotonic() - t:.0f} s, load {loadavg()})",
                    flush=True,
                )
        rounds.append(results)
        load_lines.append(
            f"| {number} | {started:%H:%M:%S} | {time.monotonic() - t0:.0f} | {before} "
            f"| {loadavg()} |"
        )
    return rounds, load_lines


def header(args: argparse.Namespace, labels: list[str], seconds: float) -> list[str]:
    commit = git("rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes in src/)" if git("status", "--porcelain", "src") else ""
    with psycopg.connect(SERVER_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    versions = []
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{name} {metadata.version(name)}")
    scale = "" if args.scale == 1 else f" at --scale {args.scale} (smaller counts)"
    where = os.environ.get("TASKFLARE_BENCH_NOTE") or urlsplit(SERVER_URL).hostname or "?"
    return [
        "# taskflare beside its Python peers",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, taskflare at {commit}{dirty}"
        + "".join(f"; {label} as a baseline" for label in labels[1:])
        + f". {args.runs} round(s){scale}; the whole run took {seconds / 60:.1f} min. Written by"
        " `benchmarks/compare.py`; `benchmarks/README.md` says what each figure means.",
        "",
        f"Machine: {os.cpu_count()} CPUs (`nproc` {nproc}), {platform.platform()}; Python "
        f"{platform.python_version()}, PostgreSQL {row[0] if row else '?'} ({where}, "
        f"defaults), SQLite {sqlite3.sqlite_version} (files on the local disk). Packages: "
        f"{', '.join(versions)}.",
    ]


def footer(args: argparse.Namespace, load_lines: list[str]) -> list[str]:
    again = f"python benchmarks/compare.py --runs {args.runs}"
    if args.scale != 1:
        again += f" --scale {args.scale}"
    if args.only:
        again += f" --only {args.only}"
    if args.baseline_ref:
        again += f" --baseline-ref {args.baseline_ref}"
    return [
        "## Machine load",
        "",
        "Load average (1, 5, 15 min, from /proc/loadavg) before and after each round.",
        "",
        "| round | started (UTC) | took s | load before | load after |",
        "|---|---|---|---|---|",
        *load_lines,
        "",
        "## How to rerun",
        "",
        "```sh",
        ".venv/bin/pip install -e '.[bench]'   # pgqueuer, procrastinate, huey, pinned",
        f".venv/bin/{again}",
        "```",
        "",
        f"Rows for `--only`: {', '.join(dict.fromkeys(r.key for r in ROWS))}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--only", help="comma-separated row keys (see the report's end)")
    parser.add_argument("--baseline-ref", help="also measure taskflare at this git ref")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count")
    parser.add_argument("--out", default=str(BENCH_DIR / "RESULTS-peers.md"))
    args = parser.parse_args()
    rows = list(ROWS)
    if args.only:
        keys = set(args.only.split(","))
        unknown = keys - {r.key for r in ROWS}
        if unknown:
            parser.error(f"unknown rows {sorted(unknown)}; known: {sorted({r.key for r in ROWS})}")
        rows = [r for r in ROWS if r.key in keys]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        pythons = {"taskflare": sys.executable}
        if args.baseline_ref:
            python, sha = stack.enter_context(baseline(args.baseline_ref))
            pythons[f"taskflare@{sha}"] = python
        labels = list(pythons)
        runs = needed(rows, labels)
        plan = [(subject(key, pythons), measure) for key, measure in runs]
        rounds, load_lines = run_rounds(plan, args.runs, args.scale)
    seconds = time.monotonic() - started
    report = render(
        rows, runs, rounds, labels, header(args, labels, seconds), footer(args, load_lines)
    )
    Path(args.out).write_text(report)
    print(report)
    print(f"wrote {args.out} ({seconds / 60:.1f} min)")


if __name__ == "__main__":
    main()
