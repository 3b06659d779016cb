"""deploy/: the Dockerfile, the compose file and the systemd units.

When `docker info` works, `test_compose_stack_in_docker` builds the image and runs the
compose file for real. Where Docker is not usable (no daemon, no privileges, as on the
machine these tests were written on), it is skipped and the pieces are tested without
Docker instead: the compose YAML's structure (read with PyYAML), the Dockerfile's
instructions, exactly the commands the compose file and the Dockerfile run (migrate, two
workers, serve, both health checks) as real processes against the test PostgreSQL, and
the systemd units with `systemd-analyze verify` (skipped with a reason if it is missing).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from helpers import HTTP_TIMEOUT
from taskflare import App
from taskflare.backends.base import QueueCountsParams

from .procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
APP_SERVICES = ("migrate", "worker", "serve")


def compose() -> dict[str, Any]:
    """deploy/compose.yaml as data."""
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def dockerfile() -> list[tuple[str, str]]:
    """deploy/Dockerfile as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def instruction(name: str) -> list[str]:
    """The arguments of every `name` instruction of the Dockerfile's final stage."""
    stages = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(stages) if word == "FROM")
    return [args for word, args in stages[last_from:] if word == name]


def healthcheck_command() -> list[str]:
    """The Dockerfile's HEALTHCHECK command (exec form)."""
    (args,) = instruction("HEALTHCHECK")
    return list(json.loads(args.split(" CMD ", 1)[1]))


def seconds(duration: str) -> float:
    """A compose duration ('45s', '1m30s') in seconds."""
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def option(command: list[str], name: str) -> str:
    """The value after `name` in an argv list."""
    return command[command.index(name) + 1]


def expand(value: str) -> str:
    """Compose's `${NAME:-default}` with the environment this test runs in."""
    return re.sub(
        r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), value
    )


# -- structure ---------------------------------------------------------------------------


def test_dockerfile_is_slim_non_root_with_a_healthcheck_and_a_worker_command() -> None:
    froms = [args for word, args in dockerfile() if word == "FROM"]
    assert froms and all("-slim" in f.split()[0] for f in froms), froms
    (user,) = instruction("USER")
    assert user.split(":")[0] not in ("root", "0"), user
    assert instruction("STOPSIGNAL") == ["SIGTERM"]
    assert healthcheck_command()[:3] == ["taskflare", "worker", "health"]
    (cmd,) = instruction("CMD")
    assert json.loads(cmd)[:2] == ["taskflare", "worker"], "exec form: SIGTERM reaches the worker"
    copies = [c.split() for c in instruction("COPY") if c.split()[-1] == "./app.py"]
    assert copies and (ROOT / copies[0][-2]).is_file()


def test_compose_file_runs_postgres_migrate_two_workers_and_serve() -> None:
    data = compose()
    services = data["services"]
    assert set(services) == {"db", "migrate", "worker", "serve"}
    assert services["db"]["image"].startswith("postgres:")
    assert "healthcheck" in services["db"]
    assert services["migrate"]["command"] == ["taskflare", "migrate"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    (cmd,) = instruction("CMD")
    assert worker["command"] == json.loads(cmd), "the compose worker runs the image's command"
    grace = float(option(worker["command"], "--shutdown-grace"))
    assert worker["stop_signal"] == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) > grace, "SIGKILL only after the grace period"
    assert services["serve"]["command"][:3] == ["taskflare", "serve", "app:app"]
    assert services["serve"]["healthcheck"]["test"][0] == "CMD"
    for name in APP_SERVICES:
        service = services[name]
        assert "@db:5432/" in service["environment"]["TASKFLARE_DATABASE_URL"]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            )


def units() -> dict[str, configparser.RawConfigParser]:
    """Every unit of deploy/systemd, parsed (keys keep their case)."""
    found = {}
    for path in sorted((DEPLOY / "systemd").iterdir()):
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(path.read_text())
        found[path.name] = parser
    return found


def test_systemd_worker_stop_timeout_is_longer_than_its_grace() -> None:
    worker = units()["taskflare-worker@.service"]["Service"]
    command = shlex.split(worker["ExecStart"])
    assert command[1:3] == ["worker", "app:app"]
    grace = float(option(command, "--shutdown-grace"))
    assert worker["KillSignal"] == "SIGTERM"
    assert float(worker["TimeoutStopSec"]) > grace
    health = units()["taskflare-worker-health@.service"]["Service"]
    assert "worker health app:app" in health["ExecStart"]


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """The units as shipped, with /opt/app/.venv/bin replaced by this test's environment
    (verify checks that every command exists and is executable)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("skipped: systemd-analyze is not installed here; units checked by parsing only")
    names = []
    for path in sorted((DEPLOY / "systemd").iterdir()):
        text = path.read_text().replace("/opt/app/.venv/bin/", f"{BIN}/")
        (tmp_path / path.name).write_text(text)
        names.append(path.name.replace("@.", "@1."))
    result = subprocess.run(
        [analyze, "verify", *names], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unknown" not in result.stderr, result.stderr


# -- the compose commands as real processes ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_as_in_container(command: list[str]) -> list[str]:
    """The container's command on this machine: `taskflare`/`python` from this test's
    environment (the image puts them on PATH)."""
    tools = {"taskflare": str(BIN / "taskflare"), "python": sys.executable}
    return [tools.get(command[0], command[0]), *command[1:]]


@pytest.mark.timeout(600)  # migrate, two workers, serve and the health checks as processes
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_compose_commands_run_against_a_real_local_stack(tmp_path: Path, database_url: str) -> None:
    """Without Docker: exactly the commands of deploy/compose.yaml and the Dockerfile's
    HEALTHCHECK, as real processes in a folder laid out like the image's /app, against the
    test PostgreSQL (the service `db` replaced by a fresh schema; serve's port 8000 by a
    free one, since other tests share this machine)."""
    services = compose()["services"]
    copy = next(c.split() for c in instruction("COPY") if c.split()[-1] == "./app.py")
    shutil.copy(ROOT / copy[-2], tmp_path / "app.py")
    env = {
        **os.environ,
        **{k: expand(str(v)) for k, v in services["serve"]["environment"].items()},
        "TASKFLARE_DATABASE_URL": database_url,
    }
    env.pop("TASKFLARE_ALLOWED_HOSTS", None)
    port = str(_free_port())

    def start(command: list[str], name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.err").open("wb") as err:  # the child keeps its own copy
            return subprocess.Popen(
                run_as_in_container(command),
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def check(command: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            run_as_in_container(command),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    migrated = check(services["migrate"]["command"])
    assert migrated.returncode == 0 and "applied migrations" in migrated.stdout, migrated
    worker_cmd = services["worker"]["command"]
    workers = [
        start(worker_cmd, f"worker-{i}") for i in range(services["worker"]["deploy"]["replicas"])
    ]
    serve_cmd = [port if arg == "8000" else arg for arg in services["serve"]["command"]]
    serve = start(serve_cmd, "serve")
    app = App(database_url)
    try:
        # Both replicas report on their own schedule: pass once the probe counts both.
        wait_for(
            lambda: (
                (r := check(healthcheck_command())).returncode == 0
                and r.stdout.startswith("ok: 2 workers on ")
                and r
            ),
            120,
            "the Dockerfile's HEALTHCHECK to pass for both workers",
        )
        serve_check = [
            arg.replace(":8000/", f":{port}/")
            for arg in services["serve"]["healthcheck"]["test"][1:]
        ]
        wait_for(lambda: check(serve_check).returncode == 0, 60, "serve's healthcheck to pass")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=HTTP_TIMEOUT) as client:
            assert client.get("/health/live").status_code == 200
            token = env["TASKFLARE_API_TOKEN"]
            listed = client.get("/queues", headers={"Authorization": f"Bearer {token}"})
            assert listed.status_code == 200, listed.text

        emails = app.queue("emails")
        emails.send_batch_sync([{"body": {"to": f"u{n}@example.com"}} for n in range(40)])

        def drained() -> bool:
            async def read() -> bool:
                backend = await app.backend()
                rows = await backend.queue_counts(QueueCountsParams("emails"))
                return not rows or not any(rows[0].by_state.values())

            return app.run_sync(read())

        wait_for(drained, 120, "the two workers to deliver every email")

        grace = seconds(services["worker"]["stop_grace_period"])
        for worker in workers:
            worker.send_signal(getattr(signal, services["worker"]["stop_signal"]))
        for worker in workers:  # what compose does: SIGKILL after stop_grace_period
            assert worker.wait(grace) == 0
        stale = check(healthcheck_command())
        assert stale.returncode == 1 and "no running worker" in stale.stderr, stale
    finally:
        for proc in [*workers, serve]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        app.close_sync()


# -- with Docker, when it works here --------------------------------------------------------


def docker_problem() -> str | None:
    """Why Docker cannot be used on this machine, or None."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        lines = (info.stderr or info.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else info.returncode}"
    return None


@pytest.mark.slow
@pytest.mark.timeout(1800)  # builds the image
def test_compose_stack_in_docker(tmp_path: Path) -> None:
    """Build the image and run deploy/compose.yaml: both workers become healthy (their
    HEALTHCHECK is `taskflare worker health`) and serve answers GET /health."""
    problem = docker_problem()
    if problem is not None:
        pytest.skip(
            f"skipped: Docker is not usable here ({problem}); the compose file's commands "
            "run without Docker in test_compose_commands_run_against_a_real_local_stack"
        )
    project = f"tfdeploy{uuid.uuid4().hex[:8]}"
    port = str(_free_port())
    env = {**os.environ, "TASKFLARE_PORT": port}
    base = ["docker", "compose", "-f", str(DEPLOY / "compose.yaml"), "-p", project]
    try:
        subprocess.run([*base, "up", "-d", "--build"], env=env, check=True, timeout=1200)

        def workers_healthy() -> bool:
            ids = subprocess.run(
                [*base, "ps", "-q", "worker"], env=env, capture_output=True, text=True, check=True
            ).stdout.split()
            states = [
                subprocess.run(
                    ["docker", "inspect", "-f", "{{.State.Health.Status}}", cid],
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                for cid in ids
            ]
            return len(states) == 2 and all(s == "healthy" for s in states)

        wait_for(workers_healthy, 300, "both worker containers to be healthy", interval=2)

        def serving() -> bool:
            try:
                return (
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=HTTP_TIMEOUT).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        wait_for(serving, 120, "serve to answer /health", interval=1)
    finally:
        subprocess.run([*base, "down", "-v"], env=env, timeout=300)
