"""Every ```python block of README.md and docs/*.md runs as written.

Each block runs in a fresh interpreter (`sys.executable`), in a fresh temporary folder,
with `TASKFLARE_DATABASE_URL` pointing at a fresh SQLite file there; it fails the test
if it exits non-zero (or names something it never defines). Comments on the block's
first lines change how it runs:

- `# needs: postgresql`: the database is a fresh schema of the test PostgreSQL server
  (skipped loudly without one; a failure with TASKFLARE_REQUIRE_POSTGRES=1);
- `# needs: server`: `taskflare serve` runs an app with the pull queue `exports` (as in
  docs/http-api.md) holding one message of each content type; the block gets its base
  URL in `TF` and the token in `TASKFLARE_API_TOKEN`, and must leave the queue empty;
- `# needs: local-services`: `python examples/local_services.py` runs (an SMTP server, a
  webhook receiver, a website, an OpenAI-compatible API) and the block gets the variables
  it prints to export, as a reader following docs/job-types.md would;
- `# run: pytest`: the block is a test file, run with `python -m pytest` and pytest's
  default settings; it must pass at least one test.

Shell commands, output and JSON take other fence languages (`bash`, `text`, `json`) and
are not run; a fence without a language is refused, so no Python hides in one.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import PG_URL, REQUIRE_PG, postgres_skip_reason

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON = {"python", "py", "python3"}
# Seconds a block, or a server it needs, may take before it counts as hung: a guard, far
# above what any takes, since a loaded machine (2 CPUs shared) makes seconds minutes.
TIMEOUT = 180
# One request to a server a block needs, while waiting for it to answer (its own retries).
HTTP_TIMEOUT = 30
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
MARKER = re.compile(r"^#\s*(?P<key>needs|run):\s*(?P<value>\S+)\s*$")
RUFF = Path(sys.executable).with_name("ruff")
RUFF_UNDEFINED_NAMES = [str(RUFF), "check", "--isolated", "--no-cache", "--quiet"]
RUFF_UNDEFINED_NAMES += ["--select", "F821,F822,F823", "--output-format", "concise"]
SERVE = [sys.executable, "-m", "taskflare", "serve"]
API_TOKEN = "docs-s3cret"

SERVER_APP = '''
"""The app `# needs: server` blocks talk to: the pull queue of docs/http-api.md."""
from taskflare import App

app = App()
exports = app.queue("exports", max_retries=5, dead_letter_queue="exports-dlq")

if __name__ == "__main__":  # one message of each content type, to be pulled
    exports.send_batch_sync([
        {"body": {"n": 1}},
        {"body": "plain text", "content_type": "text"},
        {"body": b"\\x00raw bytes", "content_type": "bytes"},
    ])
    app.close_sync()
'''


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and its text (dedented to the fence)."""

    doc: Path
    line: int  # 1-based line of the opening fence
    indent: int
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def markers(self) -> dict[str, str]:
        """`# needs: ...` / `# run: ...` comments at the top of the block."""
        found: dict[str, str] = {}
        for text in self.code.splitlines():
            match = MARKER.match(text.strip())
            if match is None:
                break
            found[match["key"]] = match["value"]
        return found


def _dedent(text: str, indent: int) -> str:
    """`text` without up to `indent` leading blanks (the fence's own indentation)."""
    blanks = len(text) - len(text.lstrip(" \t"))
    return text[min(blanks, indent) :]


def fenced_blocks(doc: Path) -> Iterator[Block]:
    """The fenced code blocks of a Markdown file, indented ones (in lists) included."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        language = (opening["info"].split() or [""])[0].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = FENCE.match(lines[j])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(_dedent(lines[j], indent))
            j += 1
        yield Block(doc, i + 1, indent, language, "\n".join(body) + "\n")
        i = j + 1


ALL_BLOCKS = [block for doc in DOC_FILES for block in fenced_blocks(doc)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language in PYTHON]


def _child_env(database_url: str, **extra: str) -> dict[str, str]:
    # The block must not inherit this run's pytest settings (xdist, addopts, ...).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(TASKFLARE_DATABASE_URL=database_url, PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _numbered(block: Block) -> str:
    first = block.line + 1
    return "\n".join(f"{first + n:5d} | {text}" for n, text in enumerate(block.code.splitlines()))


def _report(
    block: Block, problem: str, stdout: str | bytes | None, stderr: str | bytes | None
) -> str:
    if isinstance(stdout, bytes):  # what TimeoutExpired carries, even with text=True
        stdout = stdout.decode(errors="replace")
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    return (
        f"{block.where}: {problem}\n--- block ---\n{_numbered(block)}\n"
        f"--- stdout ---\n{stdout or ''}\n--- stderr ---\n{stderr or ''}"
    )


@contextmanager
def _fresh_postgres_url() -> Iterator[str]:
    """A new, empty schema on the test PostgreSQL server, dropped afterwards."""
    reason = postgres_skip_reason()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required here (TASKFLARE_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(f"skipped: no PostgreSQL for a '# needs: postgresql' block: {reason}")
    import psycopg

    schema = f"tf_docs_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(folder: Path, database_url: str) -> Iterator[dict[str, str]]:
    """`taskflare serve` on SERVER_APP; yields the environment a block needs to reach it."""
    (folder / "docs_server_app.py").write_text(SERVER_APP, encoding="utf-8")
    env = _child_env(database_url, TASKFLARE_API_TOKEN=API_TOKEN)
    subprocess.run(
        [sys.executable, "docs_server_app.py"], cwd=folder, env=env, check=True, timeout=TIMEOUT
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [*SERVE, "docs_server_app.py:app", "--port", str(port), "--log-level", "WARNING"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert server.poll() is None, f"taskflare serve exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"taskflare serve did not start:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=HTTP_TIMEOUT).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield {"TF": url, "TASKFLARE_API_TOKEN": API_TOKEN}
        queue = httpx.get(
            f"{url}/queues/exports",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=HTTP_TIMEOUT,
        ).json()["queue"]
        assert queue["depth"] == {"ready": 0, "leased": 0, "failed": 0}, (
            f"the block left messages in 'exports': {queue['depth']}"
        )
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(15)


@contextmanager
def _local_services(folder: Path) -> Iterator[dict[str, str]]:
    """`python examples/local_services.py` as a user runs it, and the variables it tells
    the user to export: the block gets those and nothing else of its own, so a setting
    the docs need but the script does not print fails here as it would for a reader."""
    log = folder / "local_services.log"
    with log.open("wb") as out:
        services = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "local_services.py")],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while "# Ctrl-C to stop" not in log.read_text():
            assert services.poll() is None, f"local_services.py exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, (
                f"local_services.py did not start:\n{log.read_text()}"
            )
            time.sleep(0.05)
        exported = {}
        for line in log.read_text().splitlines():
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                [exported[name]] = shlex.split(value)
        assert exported, f"local_services.py printed nothing to export:\n{log.read_text()}"
        yield exported
    finally:
        services.send_signal(signal.SIGINT)  # Ctrl-C, as the script says
        try:
            services.wait(15)
        except subprocess.TimeoutExpired:
            services.kill()
            services.wait(15)


def _undefined_names(block: Block) -> str | None:
    """ruff's report of names the block uses but never defines, or None."""
    if not RUFF.exists():
        return None
    result = subprocess.run(
        [*RUFF_UNDEFINED_NAMES, "--stdin-filename", "block.py", "-"],
        input="\n" * block.line + block.code,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return None if result.returncode == 0 else result.stdout


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[b.where for b in PYTHON_BLOCKS])
def test_python_block_runs_as_written(block: Block, tmp_path: Path) -> None:
    markers = block.markers
    needs, runner = markers.get("needs"), markers.get("run")
    known = (None, "postgresql", "server", "local-services")
    assert needs in known, f"{block.where}: unknown '# needs: {needs}'"
    assert runner in (None, "pytest"), f"{block.where}: unknown '# run: {runner}'"
    undefined = _undefined_names(block)
    if undefined:
        problem = f"uses names it never defines:\n{undefined}"
        pytest.fail(_report(block, problem, "", ""), pytrace=False)

    with ExitStack() as stack:
        if needs == "postgresql":
            database_url = stack.enter_context(_fresh_postgres_url())
        else:
            database_url = f"sqlite:///{tmp_path / 'taskflare.db'}"
        extra = stack.enter_context(_serve(tmp_path, database_url)) if needs == "server" else {}
        if needs == "local-services":
            extra = stack.enter_context(_local_services(tmp_path))
        # Blank lines first, so a traceback's line numbers are the Markdown file's.
        stem = re.sub(r"\W", "_", block.doc.stem.lower())
        script = tmp_path / f"{'test_' if runner else ''}doc_{stem}_{block.line}.py"
        script.write_text("\n" * block.line + block.code, encoding="utf-8")
        if runner == "pytest":
            (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
            command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
        else:
            command = [sys.executable, script.name]
        try:
            result = subprocess.run(
                command,
                cwd=tmp_path,
                env=_child_env(database_url, **extra),
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            problem = f"still running after {TIMEOUT}s"
            pytest.fail(_report(block, problem, exc.stdout, exc.stderr), pytrace=False)
        if result.returncode != 0:
            problem = f"exited with code {result.returncode}"
            pytest.fail(_report(block, problem, result.stdout, result.stderr), pytrace=False)
        if runner == "pytest" and (" passed" not in result.stdout or "skipped" in result.stdout):
            problem = "ran no test, or skipped one"
            pytest.fail(_report(block, problem, result.stdout, result.stderr), pytrace=False)


@pytest.mark.parametrize("doc", DOC_FILES, ids=[str(d.relative_to(ROOT)) for d in DOC_FILES])
def test_every_fenced_block_names_its_language(doc: Path) -> None:
    unnamed = [block.where for block in fenced_blocks(doc) if not block.language]
    assert not unnamed, f"fences without a language (python, bash, text, json...): {unnamed}"


def test_the_docs_have_python_blocks_to_run() -> None:
    # A parser that silently found nothing would make every test above vacuous.
    assert len(PYTHON_BLOCKS) >= 20
    assert any(block.doc.name == "README.md" for block in PYTHON_BLOCKS)
    assert any(block.indent for block in PYTHON_BLOCKS)  # a fence inside a list item


def test_examples_run_when_pasted_without_the_environment_variable() -> None:
    """A pasted example reads the database URL with a default (or lets `App()` read
    it): `os.environ["TASKFLARE_DATABASE_URL"]` is a KeyError on a fresh shell."""
    strict = re.compile(r"""os\.environ\[\s*["']TASKFLARE_DATABASE_URL""")
    found = [block.where for block in PYTHON_BLOCKS if strict.search(block.code)]
    assert not found, f"use os.environ.get(..., default) or App(): {found}"


FLOW_BLOCKS = [
    b for b in PYTHON_BLOCKS if b.doc.name == "flow-control.md" and not b.markers.get("needs")
]


@pytest.mark.parametrize("block", FLOW_BLOCKS, ids=[b.where for b in FLOW_BLOCKS])
def test_a_flow_control_example_runs_again_in_the_same_folder(block: Block, tmp_path: Path) -> None:
    """A user tries an example twice where they are: the second run meets the database the
    first left (its taskflare.db, a key still held, jobs still pending) and must pass too."""
    database_url = f"sqlite:///{tmp_path / 'taskflare.db'}"
    script = tmp_path / f"doc_flow_control_{block.line}.py"
    script.write_text("\n" * block.line + block.code, encoding="utf-8")
    for run in (1, 2):
        result = subprocess.run(
            [sys.executable, script.name],
            cwd=tmp_path,
            env=_child_env(database_url),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if result.returncode != 0:
            problem = f"run {run} in the same folder exited with code {result.returncode}"
            pytest.fail(_report(block, problem, result.stdout, result.stderr), pytrace=False)
