"""The SQLite message drain's CPU per message, by thread, beside the floor loop, A/B.

    python benchmarks/msg_drain_cpu.py [--messages 20000] [--rounds 5]
                                       [--against OTHER_CHECKOUT] [--profile DIR]

Each round: for this checkout (and `--against` another one, in alternating order), a
fresh SQLite file gets `--messages` messages by `send_batch` (100 a call); one
`taskflare worker` process drains them through a batch consumer (`max_batch_size=100`,
`max_batch_timeout=0`, each message's body read, as `compare.py`'s taskflare messages
row); then the floor loop (`peers/physical.py`: claim 100, delete them) drains the same
number on a bare table. Printed per run: the drain rate from the first handler call to
the last, and the worker's CPU per message over that span, all threads and per thread
(the event loop's and the statement thread's, from each thread's CPU clock); the floor's
rate; the load average. A checkout is run with its own `.venv/bin/python`.

`--profile DIR` (this checkout only): cProfile (each thread's CPU clock) of the event-loop
thread and of the statement thread over the same span, printed and saved in DIR.
Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

WORKER_APP = '''
import cProfile, json, os, threading, time

from taskflare import App, MessageBatch

app = App(os.environ["MSG_URL"])
queue = app.queue("noop", max_batch_size=100, max_batch_timeout=0)
N = int(os.environ["MSG_N"])
OUT = os.environ["MSG_OUT"]
PROFILE = os.environ.get("MSG_PROFILE")
state = {"n": 0}
profiles = {}

if PROFILE:  # the statement thread profiles itself from its start (its own CPU clock)
    from taskflare.backends.sqlite import statementthread

    _run = statementthread.StatementThread._run

    def _profiled(self):
        profiles["statement"] = prof = cProfile.Profile(time.thread_time)
        prof.enable()
        _run(self)

    statementthread.StatementThread._run = _profiled


def threads_cpu():
    """CPU seconds of each thread, by name (its CPU clock: ns resolution, not ticks)."""
    cpu = {}
    for t in threading.enumerate():
        try:
            clock = time.pthread_getcpuclockid(t.ident)
            cpu[t.name] = cpu.get(t.name, 0.0) + time.clock_gettime(clock)
        except (OSError, TypeError):
            continue
    return cpu


@queue.consumer
async def consume(batch: MessageBatch) -> None:
    if state["n"] == 0:
        state.update(first=time.time(), first_len=len(batch.messages), cpu0=threads_cpu(),
                     p0=time.process_time())
        if PROFILE:
            profiles["loop"] = prof = cProfile.Profile(time.thread_time)
            prof.enable()
    for message in batch.messages:
        message.body["t"]
    state["n"] += len(batch.messages)
    if state["n"] >= N and "last" not in state:
        state["last"] = time.time()
        cpu1, p1 = threads_cpu(), time.process_time()
        if PROFILE:
            profiles["loop"].disable()
            backend = await app.backend()
            await backend._db.call(profiles["statement"].disable)
            for name, prof in profiles.items():
                prof.dump_stats(os.path.join(PROFILE, name + ".prof"))
        span = N - state["first_len"]
        per = {k: (v - state["cpu0"].get(k, 0.0)) / span * 1e6 for k, v in cpu1.items()}
        result = {
            "rate": span / (state["last"] - state["first"]),
            "cpu_us": (p1 - state["p0"]) / span * 1e6,
            "threads_us": per,
        }
        with open(OUT + ".tmp", "w") as f:
            json.dump(result, f)
        os.replace(OUT + ".tmp", OUT)
'''


def child(out: str, n: int, profile: str | None) -> None:
    """In the subject's interpreter: fill a fresh database, drain it with a worker."""
    import asyncio
    import signal

    from taskflare import App

    tmp = Path(tempfile.mkdtemp(prefix="msgdrain-"))
    url = f"sqlite:///{tmp}/bench.db"

    async def fill() -> None:
        app = App(url)
        queue = app.queue("noop", max_batch_size=100, max_batch_timeout=0)
        await app.backend()
        for first in range(0, n, 100):
            await queue.send_batch([{"body": {"t": 0.0}} for _ in range(min(100, n - first))])
        await app.close()

    asyncio.run(fill())
    (tmp / "msgapp.py").write_text(WORKER_APP)
    result_file = tmp / "result.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp),
        "MSG_URL": url,
        "MSG_N": str(n),
        "MSG_OUT": str(result_file),
    }
    if profile:
        env["MSG_PROFILE"] = profile
    exe = str(Path(sys.executable).with_name("taskflare"))
    wrapper = os.environ.get("MSG_WORKER_WRAPPER", "").split()  # e.g. "strace -f -c -o x --"
    proc = subprocess.Popen(
        [*wrapper, exe, "worker", "msgapp:app", "--log-level", "WARNING"], cwd=tmp, env=env
    )
    deadline = time.monotonic() + 300
    try:
        while not result_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker exited or timed out (code {proc.returncode})")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    Path(out).write_text(result_file.read_text())
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()


def run_subject(python: str, n: int, profile: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "out.json")
        command = [python, str(Path(__file__)), "--child", str(out), "--messages", str(n)]
        if profile:
            command += ["--profile", profile]
        subprocess.run(command, check=True, cwd=tmp)
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def run_floor(n: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "floor.json")
        env = {
            **os.environ,
            "PYTHONPATH": str(BENCH_DIR),
            "PB_DATABASE_URL": f"sqlite:///{tmp}/floor.db",
            "PB_SCALE": str(n / 20_000),
        }
        subprocess.run(
            [sys.executable, "-m", "peers.physical", str(out)], check=True, cwd=BENCH_DIR, env=env
        )
        return float(json.loads(out.read_text())["claim_ack_jobs_s"])


def show_profile(directory: str) -> None:
    import pstats

    for name in ("loop", "statement"):
        path = Path(directory, name + ".prof")
        if path.exists():
            print(f"\n== {name} thread ==")
            pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", help="another checkout (its .venv/bin/python is used)")
    parser.add_argument("--profile", help="directory for this checkout's profiles")
    parser.add_argument("--no-floor", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.messages, args.profile)
        return
    here = str(REPO / ".venv/bin/python")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        print(json.dumps(run_subject(here, args.messages, str(Path(args.profile).resolve()))))
        show_profile(args.profile)
        return
    subjects = {"this": here}
    if args.against:
        subjects["against"] = str(Path(args.against, ".venv/bin/python"))
    results: dict[str, list[dict[str, object]]] = {k: [] for k in [*subjects, "floor"]}
    for r in range(args.rounds):
        order = list(subjects) if r % 2 == 0 else list(reversed(subjects))
        for key in order:
            got = run_subject(subjects[key], args.messages)
            got["load"] = os.getloadavg()[0]
            results[key].append(got)
            threads = got["threads_us"]
            assert isinstance(threads, dict)
            print(
                f"round {r} {key:8s} {got['rate']:9,.0f} msgs/s  cpu {got['cpu_us']:5.1f} µs/msg"
                f"  loop {threads.get('MainThread', 0):5.1f}"
                f"  statement {threads.get('taskflare-sqlite', 0):5.1f}"
                f"  load {got['load']:.1f}",
                flush=True,
            )
        if not args.no_floor:
            floor = run_floor(args.messages)
            results["floor"].append({"rate": floor, "load": os.getloadavg()[0]})
            print(f"round {r} floor    {floor:9,.0f} msgs/s  load {os.getloadavg()[0]:.1f}")
    print("\nmedians:")
    for key, runs in results.items():
        if not runs:
            continue
        rate = statistics.median(float(x["rate"]) for x in runs)  # type: ignore[arg-type]
        line = f"  {key:8s} {rate:9,.0f} msgs/s"
        if key != "floor":
            cpu = statistics.median(float(x["cpu_us"]) for x in runs)  # type: ignore[arg-type]
            loop = statistics.median(x["threads_us"].get("MainThread", 0) for x in runs)  # type: ignore[attr-defined]
            stmt = statistics.median(x["threads_us"].get("taskflare-sqlite", 0) for x in runs)  # type: ignore[attr-defined]
            line += f"  cpu {cpu:.1f} µs/msg  loop {loop:.1f}  statement {stmt:.1f}"
        print(line)


if __name__ == "__main__":
    main()
