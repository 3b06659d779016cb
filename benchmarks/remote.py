"""taskflare on PostgreSQL as users deploy it: direct, one round trip of ~1 ms away, and
behind PgBouncer in transaction pooling mode, side by side in one run.

    python benchmarks/remote.py [--runs 1] [--scale 1.0] [--delay-ms 0.5]
                                [--out benchmarks/RESULTS-remote.md]

The measures are `compare.py`'s (single enqueue, bulk enqueue, job drain, pickup), for
taskflare's jobs and, where it can run, pgqueuer:

- direct: the local server on 127.0.0.1.
- delayed: through `delayproxy.py`, which holds every chunk `--delay-ms` each way (this
  machine's kernel has no `tc netem`); the proxy's own CPU shares the machine and is
  printed with the report.
- pgbouncer: Debian's `pgbouncer` (as `scripts/bootstrap` installs it), pool_mode
  transaction, 20 server connections; taskflare with `pgbouncer=1` and a direct
  `listen_url` for LISTEN. pgqueuer is not measured there: it LISTENs on its pooled
  connection, which transaction pooling does not support.

Nothing asserts on time; the report keeps the load beside each round.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import compare

BENCH_DIR = Path(__file__).resolve().parent
DIRECT = compare.SERVER_URL
MEASURES = ("enqueue", "bulk", "drain", "pickup")
FIGURES = (
    ("enqueue", "jobs_s", "single enqueue, jobs/s"),
    ("enqueue", "p50_ms", "single enqueue p50, ms"),
    ("enqueue", "p95_ms", "single enqueue p95, ms"),
    ("bulk", "jobs_s", "bulk enqueue, jobs/s"),
    ("drain", "jobs_s", "job drain, jobs/s"),
    ("pickup", "p50_ms", "pickup p50, ms"),
    ("pickup", "p95_ms", "pickup p95, ms"),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


@contextlib.contextmanager
def delayed(delay_ms: float) -> Iterator[str]:
    """The server through delayproxy.py; yields the URL of the `test` database."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            str(BENCH_DIR / "delayproxy.py"),
            "--delay-ms",
            str(delay_ms),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        wait_listening(port, proc)
        yield f"postgresql://postgres@127.0.0.1:{port}/test"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode().strip().splitlines()
        print(f"  delay proxy: {out[-1] if out else '?'}", flush=True)


@contextlib.contextmanager
def pgbouncer() -> Iterator[str]:
    """A private pgbouncer in transaction mode in front of every database of the server."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.access(binary, os.X_OK):
        raise SystemExit("pgbouncer is not installed (scripts/bootstrap installs it)")
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="taskflare-bench-pgbouncer-"))
    (folder / "users.txt").write_text('"postgres" ""\n')
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n* = host=127.0.0.1 port=5432\n[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"logfile = {folder / 'log'}\npidfile = {folder / 'pid'}\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\npool_mode = transaction\n"
        "default_pool_size = 20\nmax_client_conn = 500\nserver_reset_query =\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    command = [binary, str(ini)]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        command[1:1] = ["-u", "postgres"]
        os.chmod(folder, 0o777)
        for path in folder.iterdir():
            os.chmod(path, 0o666)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield f"postgresql://postgres@127.0.0.1:{port}/test"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def setting(name: str, delay_ms: float) -> Iterator[None]:
    """Point compare.py's fresh databases at the server as `name` reaches it."""
    if name == "direct":
        yield
        return
    maker = delayed(delay_ms) if name == "delayed" else pgbouncer()
    with maker as url:
        compare.SERVER_URL = url
        if name == "pgbouncer":
            direct = urlsplit(DIRECT)._replace(path="/{db}").geturl()
            os.environ["BENCH_URL_QUERY"] = f"pgbouncer=1&listen_url={quote(direct, safe='{}')}"
        try:
            yield
        finally:
            compare.SERVER_URL = DIRECT
            os.environ.pop("BENCH_URL_QUERY", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--delay-ms", type=float, default=0.5)
    parser.add_argument("--out", default=str(BENCH_DIR / "RESULTS-remote.md"))
    args = parser.parse_args()
    settings = ("direct", "delayed", "pgbouncer")
    subjects = {
        "taskflare": compare.Subject("taskflare jobs pg", "taskflare", "postgres", "jobs"),
        "pgqueuer": compare.Subject("pgqueuer", "pgqueuer", "postgres"),
    }
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    loads = []
    started = time.monotonic()
    for number in range(1, args.runs + 1):
        for where in settings:
            with setting(where, args.delay_ms):
                for name, who in subjects.items():
                    if name == "pgqueuer" and where == "pgbouncer":
                        continue
                    for measure in MEASURES:
                        if name == "pgqueuer" and measure == "bulk" and where != "direct":
                            continue
                        t = time.monotonic()
                        result = compare.run_measure(who, measure, args.scale)
                        results.setdefault((where, name, measure), []).append(result)
                        print(
                            f"round {number} {where:<9} {name:<9} {measure:<7} "
                            f"{compare.summary(result)} ({time.monotonic() - t:.0f} s, "
                            f"load {compare.loadavg()})",
                            flush=True,
                        )
        loads.append(f"round {number}: load {compare.loadavg()}")
    minutes = (time.monotonic() - started) / 60
    Path(args.out).write_text(report(args, results, settings, loads, minutes))
    print(Path(args.out).read_text())


def cell(runs: list[dict[str, Any]] | None, key: str) -> str:
    values = [r[key] for r in runs or [] if key in r]
    if not values:
        errors = [r["error"] for r in runs or [] if "error" in r]
        return f"error: {errors[0]}" if errors else "—"
    value = statistics.median(values)
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def report(
    args: argparse.Namespace,
    results: dict[tuple[str, str, str], list[dict[str, Any]]],
    settings: tuple[str, ...],
    loads: list[str],
    minutes: float,
) -> str:
    commit = compare.git("rev-parse", "--short", "HEAD")
    head = {
        "direct": "direct (127.0.0.1)",
        "delayed": f"+{2 * args.delay_ms:g} ms round trip",
        "pgbouncer": "PgBouncer, transaction pooling",
    }
    lines = [
        "# taskflare on PostgreSQL: direct, remote, behind PgBouncer",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, taskflare at {commit}; "
        f"{args.runs} round(s) at --scale {args.scale:g}; {minutes:.1f} min. Written by "
        "`benchmarks/remote.py` (its docstring says how each setting is made); the "
        "measures are `compare.py`'s (`benchmarks/README.md`).",
        "",
        "| figure | "
        + " | ".join(f"taskflare, {head[s]}" for s in settings)
        + " | "
        + " | ".join(f"pgqueuer, {head[s]}" for s in settings[:2])
        + " |",
        "|---|" + "---|" * (len(settings) + 2),
    ]
    for measure, key, label in FIGURES:
        row = [cell(results.get((s, "taskflare", measure)), key) for s in settings]
        row += [cell(results.get((s, "pgqueuer", measure)), key) for s in settings[:2]]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    lines += ["", "Cells are medians over the rounds. Load average after each round:", ""]
    lines += [f"- {line}" for line in loads]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
