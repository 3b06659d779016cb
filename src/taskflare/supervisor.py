"""`taskflare worker --processes N`: run N worker processes, restart the ones that die.

The supervisor starts each child as `python -m taskflare worker ...` with the same
options, restarts a child that exits unexpectedly (after a backoff that grows while it
keeps dying young, and is logged), and on SIGTERM/SIGINT forwards SIGTERM to every child
and waits for their graceful stop before exiting 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger("taskflare.supervisor")


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """How many children, and how restarts back off."""

    processes: int
    min_backoff: float = 0.5
    max_backoff: float = 30.0
    healthy_after: float = 10.0
    stop_timeout: float = 60.0


class Supervisor:
    """Keeps `processes` copies of a worker command running."""

    def __init__(self, worker_args: Sequence[str], config: SupervisorConfig) -> None:
        self.command = [sys.executable, "-m", "taskflare", "worker", *worker_args]
        self.config = config
        self._children: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()

    async def _spawn(self, slot: int) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(*self.command)
        self._children[slot] = process
        log.info("worker %d started (pid %d)", slot, process.pid)
        return process

    async def _keep_alive(self, slot: int) -> None:
        backoff = self.config.min_backoff
        while not self._stopping.is_set():
            started = time.monotonic()
            process = await self._spawn(slot)
            if self._stopping.is_set():  # stop() ran while this child was starting
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= self.config.healthy_after:
                backoff = self.config.min_backoff
            log.warning(
                "worker %d (pid %d) exited with code %s; restarting in %.1fs",
                slot,
                process.pid,
                code,
                backoff,
            )
            try:
                async with asyncio.timeout(backoff):  # see ChangeSignal.wait
                    await self._stopping.wait()
                return
            except TimeoutError:
                pass
            backoff = min(backoff * 2, self.config.max_backoff)

    def stop(self) -> None:
        """Forward SIGTERM to every child and stop restarting them."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("stopping %d workers", len(self._children))
        for process in self._children.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        keepers = [
            asyncio.create_task(self._keep_alive(slot)) for slot in range(self.config.processes)
        ]
        await self._stopping.wait()
        # Each keeper returns once its child has exited; a child that ignores SIGTERM
        # past `stop_timeout` is killed.
        try:
            await asyncio.wait_for(
                asyncio.gather(*keepers, return_exceptions=True), self.config.stop_timeout
            )
        except TimeoutError:
            for process in self._children.values():
                if process.returncode is None:
                    log.error("worker pid %d did not stop in time; killing it", process.pid)
                    process.kill()
            await asyncio.gather(*(p.wait() for p in self._children.values()))
        log.info("all workers stopped")
        return 0
