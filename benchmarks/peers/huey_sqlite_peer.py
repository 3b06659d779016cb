"""huey with SQLite storage: `SqliteHuey` (WAL), a consumer of 8 threads (sync API)."""

from __future__ import annotations

import os

from huey import SqliteHuey

from peers import hits

NAME, BACKEND = "huey", "sqlite"
WORKERS = 8
BULK_API = None
CONFIG = (
    f"SqliteHuey (WAL, default synchronous), consumer -k thread -w {WORKERS}; polling with the"
    " default delay 0.1 s, backoff 1.15, max 10 s"
)

huey = SqliteHuey("pb", filename=os.environ["PB_DATABASE_URL"].removeprefix("sqlite:///"))


@huey.task()
def noop(t: float = 0.0) -> None:
    hits.hit(t)


async def setup() -> None:
    pass


async def open() -> None:
    pass


async def enqueue(t: float) -> None:
    noop(t)


async def close() -> None:
    pass


def worker_main() -> None:
    huey.create_consumer(workers=WORKERS, worker_type="thread").run()
