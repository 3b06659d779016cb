"""A crawl given a catastrophic regular expression (a payload's `include`), or a site whose
robots.txt is written to backtrack, finishes on a real worker process, and that worker
runs another job meanwhile: patterns run in linear time (RE2, protego >= 0.6.2), so
nothing stalls the worker's event loop (ReDoS)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from helpers import wait_until
from taskflare import App, JobStatus, contrib
from taskflare.contrib import CrawlSettings

from .procs import WorkerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import local_services  # noqa: E402

# `re.search` backtracks 2**40 times on the `!` link before giving up: hours.
CATASTROPHIC = r"(a+)+$"
A_LINK = "/" + "a" * 40
A_TRAP = A_LINK + "!"
# CVE-2026-55520's robots.txt: protego < 0.6.2 backtracks exponentially on a near miss.
HOSTILE_RULE = "/" + "*1" * 12 + "*Z"
ONES_LINK = "/" + "1" * 60  # a near miss of HOSTILE_RULE: allowed
ONES_DISALLOWED = "/" + "1" * 12 + "Z"
# A robots.txt of 500 KiB (what the crawler reads of one): 25,000 wildcard rules, each
# can_fetch about 6 ms; a page of 10,000 links it disallows (so nothing is claimed, and
# nothing awaited, between two checks) then takes protego about a minute.
BIG_ROBOTS = "User-agent: *\n" + "".join(f"Disallow: /p{i}*q*r\n" for i in range(25_000))
MANY_LINKS = 10_000

WORKER_APP = """
import os
from taskflare import App, contrib
from taskflare.contrib import CrawlSettings

app = App(os.environ["TF_URL"])
app.use(contrib.crawler(CrawlSettings(allowed_networks=["127.0.0.1/32"], delay=0.0)))


@app.job("ping")
async def ping(payload, ctx):
    return "pong"
"""


def hostile_site(big_robots: bool = False) -> Starlette:
    """`/` links to the pages of the traps; robots.txt holds HOSTILE_RULE; any other path
    is a page without links. `big_robots`: robots.txt is BIG_ROBOTS instead and `/` links
    to MANY_LINKS pages. `app.state.hits` counts requests per path."""
    hits: dict[str, int] = {}

    def count(request: Request) -> None:
        hits[request.url.path] = hits.get(request.url.path, 0) + 1

    async def robots(request: Request) -> Response:
        count(request)
        if big_robots:
            return PlainTextResponse(BIG_ROBOTS)
        return PlainTextResponse(f"User-agent: *\nDisallow: {HOSTILE_RULE}\n")

    async def home(request: Request) -> Response:
        count(request)
        links = (A_LINK, A_TRAP, ONES_LINK, ONES_DISALLOWED)
        if big_robots:
            links = tuple(f"/p{i}qr" for i in range(MANY_LINKS))
        anchors = "".join(f'<a href="{href}">x</a>' for href in links)
        return HTMLResponse(f"<html><head><title>Home</title></head><body>{anchors}</body></html>")

    async def leaf(request: Request) -> Response:
        count(request)
        return HTMLResponse("<html><head><title>Leaf</title></head><body>leaf</body></html>")

    site = Starlette(
        routes=[
            Route("/robots.txt", robots),
            Route("/", home),
            Route("/{rest:path}", leaf),
        ]
    )
    site.state.hits = hits
    return site


@pytest.fixture
def site() -> Iterator[tuple[str, dict[str, int]]]:
    """The hostile site, served: (base URL, hits per path)."""
    app = hostile_site()
    with local_services.serve(app) as url:
        yield url, app.state.hits


async def crawl_while_pinging(
    database_url: str,
    tmp_path: Path,
    base: str,
    hits: dict[str, int],
    payload: dict[str, Any],
    to_the_end: bool = True,
) -> tuple[App, Any]:
    """Run a crawl of `base` on a worker process; once the start page (the traps' links)
    has been stored, three `ping` jobs in a row on the same worker must each complete
    within 20 s and (when `to_the_end`) the crawl within 60 s. The app (to close) and the
    crawl job (finished when `to_the_end`)."""
    (tmp_path / "crawlapp.py").write_text(WORKER_APP)
    app = App(database_url)
    app.use(contrib.crawler(CrawlSettings(allowed_networks=["127.0.0.1/32"], delay=0.0)))

    @app.job("ping")
    async def ping(payload: Any, ctx: Any) -> str:
        return "pong"

    job = await app.enqueue("crawl-website", {"url": f"{base}/", "sitemap": False, **payload})
    worker = WorkerProcess("crawlapp.py:app", tmp_path, {"TF_URL": database_url})
    try:
        # The start page is stored just before its links are checked: ping then.
        start_page = app.namespace(f"crawl.{job.id}")
        await wait_until(lambda: start_page.get(f"{base}/"), timeout=30, what="the start page")
        # Three pings one after the other, so that one lands in whatever the page job
        # does after storing its page (nothing says when a check starts or ends).
        for n in range(3):
            pinged = await app.enqueue("ping", {"n": n})

            async def ping_done(job_id: str = pinged.id) -> Any:
                found = await app.get_job(job_id)
                return found if found is not None and found.status.finished else None

            done = await wait_until(ping_done, timeout=20, what=f"ping {n}, during the crawl")
            assert done.status is JobStatus.COMPLETED and done.result == "pong"
        if not to_the_end:
            return app, await app.get_job(job.id)

        async def crawl_done() -> Any:
            found = await app.get_job(job.id)
            batch = await app.get_batch(job.id)
            finished = batch is not None and batch.total and not (batch.pending or batch.processing)
            return found if found is not None and found.status.finished and finished else None

        crawled = await wait_until(crawl_done, timeout=60, what="the crawl to finish")
    finally:
        worker.stop()
    return app, crawled


async def test_a_catastrophic_include_pattern_neither_stalls_the_worker_nor_is_skipped(
    database_url: str, tmp_path: Path, site: tuple[str, dict[str, int]]
) -> None:
    base, hits = site
    app, crawled = await crawl_while_pinging(
        database_url, tmp_path, base, hits, {"include": [CATASTROPHIC]}
    )
    try:
        assert crawled.status is JobStatus.COMPLETED, crawled.error
        pages = {d.key for d in (await app.namespace(f"crawl.{crawled.id}").list()).items}
        # The pattern is applied exactly: the link of `a`s is followed, the trap is not.
        assert pages == {f"{base}/", f"{base}{A_LINK}"}
        assert A_TRAP not in hits and ONES_LINK not in hits
        batch = await app.get_batch(crawled.id)
        assert batch is not None and batch.completed == 2 and batch.failed == 0
    finally:
        await app.close()


async def test_a_robots_txt_written_to_backtrack_does_not_stall_the_worker(
    database_url: str, tmp_path: Path, site: tuple[str, dict[str, int]]
) -> None:
    base, hits = site
    app, crawled = await crawl_while_pinging(database_url, tmp_path, base, hits, {})
    try:
        assert crawled.status is JobStatus.COMPLETED, crawled.error
        pages = {d.key for d in (await app.namespace(f"crawl.{crawled.id}").list()).items}
        # robots.txt is still honoured: the near miss is fetched, the match is not.
        assert f"{base}{ONES_LINK}" in pages and ONES_DISALLOWED not in hits
        assert pages == {f"{base}{path}" for path in ("/", A_LINK, A_TRAP, ONES_LINK)}
    finally:
        await app.close()


@pytest.fixture
def big_robots_site() -> Iterator[tuple[str, dict[str, int]]]:
    """The hostile site with a 500 KiB robots.txt and a page of many links."""
    app = hostile_site(big_robots=True)
    with local_services.serve(app) as url:
        yield url, app.state.hits


async def test_a_huge_robots_txt_and_a_page_of_many_links_do_not_stall_the_worker(
    database_url: str, tmp_path: Path, big_robots_site: tuple[str, dict[str, int]]
) -> None:
    """Checking thousands of links against thousands of robots.txt rules is slow however
    it is done (linear, but long): it runs off the event loop, so the worker's other jobs
    go on meanwhile. The crawl itself is not waited for."""
    base, hits = big_robots_site
    app, _ = await crawl_while_pinging(database_url, tmp_path, base, hits, {}, to_the_end=False)
    await app.close()
