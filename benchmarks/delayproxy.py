"""A TCP proxy that holds every chunk for a fixed delay each way: PostgreSQL as if on
another machine, for the benchmarks (the kernel here has no `tc netem`).

    python benchmarks/delayproxy.py [--delay-ms 0.5] [--listen 127.0.0.1:15432]
                                    [--target 127.0.0.1:5432]

A client of the listen address sees a round trip of about 2 x delay more than direct
(print-checked at start with `SELECT 1`). Order is kept per direction; the proxy's own
CPU is printed when it stops (Ctrl-C / SIGTERM), since it shares the machine with the
benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import resource
import signal
import socket
import sys
import time


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk written `delay` seconds after it was read."""
    queue: collections.deque[tuple[float, bytes]] = collections.deque()
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()
    done = False

    async def send() -> None:
        while True:
            while not queue:
                if done:
                    return
                arrived.clear()
                await arrived.wait()
            due, chunk = queue.popleft()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)

    sender = asyncio.create_task(send())
    try:
        while chunk := await reader.read(1 << 16):
            queue.append((loop.time() + delay, chunk))
            arrived.set()
    finally:
        done = True
        arrived.set()
        with contextlib.suppress(Exception):
            await sender
            await writer.drain()
        writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            s_reader, s_writer = await asyncio.open_connection(*target)
        except OSError:
            c_writer.close()
            return
        for w in (c_writer, s_writer):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(
            pump(c_reader, s_writer, delay),
            pump(s_reader, c_writer, delay),
            return_exceptions=True,
        )

    await asyncio.start_server(handle, *listen)  # serves until the process exits
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"delaying {delay * 1e3:.2f} ms each way: {listen[0]}:{listen[1]} -> "
        f"{target[0]}:{target[1]}",
        flush=True,
    )
    started = time.monotonic()
    await stop.wait()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"proxy CPU {usage.ru_utime + usage.ru_stime:.1f} s over "
        f"{time.monotonic() - started:.0f} s",
        flush=True,
    )
    os._exit(0)  # open connections end with the process, not with cancellation tracebacks


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, default=0.5)
    parser.add_argument("--listen", type=address, default=("127.0.0.1", 15432))
    parser.add_argument("--target", type=address, default=("127.0.0.1", 5432))
    args = parser.parse_args()
    # The standard loop, not uvloop: libuv's timers count whole milliseconds.
    asyncio.run(serve(args.listen, args.target, args.delay_ms / 1e3))


if __name__ == "__main__":
    sys.exit(main())
