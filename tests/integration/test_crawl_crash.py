"""A crawl spread over real worker processes survives kill -9: the crawl finishes with
every page, pages finished before the kill are not fetched again, and only the pages in
flight when the worker died are fetched a second time."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from taskflare import App, contrib
from taskflare.contrib import CrawlSettings

from .procs import WorkerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import local_services  # noqa: E402

CONCURRENCY = 4
CRAWL_APP = """
import os
from taskflare import App, contrib
from taskflare.contrib import CrawlSettings

app = App(os.environ["TF_URL"])
# A short lease, so the jobs of a killed worker come back quickly.
app.queue("crawl", visibility_timeout=2.0, max_batch_timeout=0)
app.use(contrib.crawler(CrawlSettings(allowed_networks=["127.0.0.1/32"], delay=0.1)))
"""


def settings() -> CrawlSettings:
    return CrawlSettings(allowed_networks=["127.0.0.1/32"], delay=0.1)


async def wait_for_batch(app: App, crawl_id: str, done_at_least: int, timeout: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        batch = await app.get_batch(crawl_id)
        if batch is not None and batch.total and batch.completed >= done_at_least:
            return batch.completed
        await asyncio.sleep(0.1)
    raise AssertionError(f"the crawl did not reach {done_at_least} pages in {timeout}s")


@pytest.mark.slow
async def test_a_crawl_survives_a_worker_killed_mid_crawl(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "crawlapp.py").write_text(CRAWL_APP)
    env = {"TF_URL": database_url}
    site = local_services.demo_site(slow_seconds=0.2)
    app = App(database_url)
    app.queue("crawl", visibility_timeout=2.0, max_batch_timeout=0)
    app.use(contrib.crawler(settings()))
    with local_services.serve(site) as base:
        job = await app.enqueue("crawl-website", {"url": f"{base}/page/0", "maxPages": 100})
        first = WorkerProcess("crawlapp.py:app", tmp_path, env, "--concurrency", str(CONCURRENCY))
        try:
            await wait_for_batch(app, job.id, 12, timeout=60)
            first.signal(signal.SIGKILL)
            first.wait(10)
        finally:
            first.stop()
        hits_at_kill = dict(site.state.hits)
        second = WorkerProcess("crawlapp.py:app", tmp_path, env, "--concurrency", str(CONCURRENCY))
        try:
            await wait_for_batch(app, job.id, 54, timeout=90)
        finally:
            second.signal(signal.SIGTERM)
            second.wait(30)
            second.stop()
        hits = dict(site.state.hits)
    try:
        batch = await app.get_batch(job.id)
        assert batch is not None and batch.total == 54 and batch.completed == 54
        namespace = f"crawl.{job.id}"
        assert await app.namespace(namespace).count() == 54
        pages = {k: v for k, v in hits.items() if k not in ("/robots.txt", "/sitemap.xml")}
        assert len(pages) == 54
        twice = [path for path, n in pages.items() if n > 1]
        assert all(n <= 2 for n in pages.values()), pages
        # Only pages in flight when the worker died (at most one a slot) were fetched again.
        assert len(twice) <= CONCURRENCY, twice
        assert all(hits_at_kill.get(path) == 1 for path in twice)
        assert len(hits_at_kill) < len(hits)  # the kill really was mid-crawl
    finally:
        await app.close()
