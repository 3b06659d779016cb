"""crawl-website against a local site of 50 linked pages with a robots.txt that disallows
a path, a sitemap, a redirect, a 404, a slow page and a non-HTML file: one job per page
in one batch, every page fetched once, maxPages/maxDepth/include/exclude honoured."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import running_worker, wait_until
from taskflare import App, Backoff, InvalidPayload, JobBatch, JobStatus, WorkerConfig, contrib
from taskflare.contrib import CrawlSettings
from taskflare.contrib.crawl import normalize_url, parse_page
from taskflare.testing import drain

from .conftest import local_services

NO_WAIT = Backoff(base=0, cap=0, jitter=False)
Site = tuple[str, dict[str, int]]


@pytest.fixture
def site() -> Iterator[Site]:
    """The local site: (base URL, hits per path)."""
    app = local_services.demo_site(slow_seconds=0.5)
    with local_services.serve(app) as url:
        yield url, app.state.hits


def use_crawler(app: App, **settings: Any) -> None:
    values: dict[str, Any] = {"allowed_networks": ["127.0.0.1/32"], "delay": 0.0, "timeout": 5.0}
    values.update(settings)
    app.use(contrib.crawler(CrawlSettings(**values), retry=NO_WAIT))


async def crawl(app: App, payload: dict[str, Any], concurrency: int = 8) -> tuple[Any, JobBatch]:
    """Run a crawl to its end on an in-process worker; the crawl job and its batch."""
    job = await app.enqueue("crawl-website", payload)
    async with running_worker(app, WorkerConfig(concurrency=concurrency)):

        async def done() -> Any:
            crawl_job = await app.get_job(job.id)
            if crawl_job is None or not crawl_job.status.finished:
                return None
            batch = await app.get_batch(job.id)
            if batch is None or batch.pending or batch.processing:
                return None
            return crawl_job, batch

        found: tuple[Any, JobBatch] = await wait_until(done, timeout=90, what="the crawl")
    return found


async def pages_of(app: App, namespace: str) -> dict[str, Any]:
    items = (await app.namespace(namespace).list(limit=1000)).items
    return {d.key: d.value for d in items}


async def test_a_50_page_site_is_crawled_once_per_page(contrib_app: App, site: Site) -> None:
    base, hits = site
    use_crawler(contrib_app)
    job, batch = await crawl(contrib_app, {"url": f"{base}/page/0", "maxPages": 100})
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.result["batchId"] == job.id and job.result["seeded"] == 2  # start + sitemap
    pages = await pages_of(contrib_app, job.result["namespace"])
    expected = {f"{base}/page/{n}" for n in range(50)}
    expected |= {f"{base}/old", f"{base}/missing", f"{base}/slow", f"{base}/files/report.pdf"}
    assert set(pages) == expected
    assert batch.total == len(expected) == batch.completed and batch.failed == 0
    assert batch.progress == 1.0
    # Every page fetched exactly once; robots.txt and the sitemap read once.
    assert {path: n for path, n in hits.items() if n != 1} == {}
    assert "/private/secret" not in hits  # disallowed by robots.txt
    assert "/sitemap.xml" in hits and "/robots.txt" in hits
    page0 = pages[f"{base}/page/0"]
    assert page0["status"] == 200 and page0["title"] == "Page 0"
    assert page0["text"].startswith("Page 0 Text of page 0.") and "var x" not in page0["text"]
    assert f"{base}/page/1" in page0["links"] and "https://elsewhere.example/x" in page0["links"]
    assert page0["fetched_at"].endswith("Z") and page0["depth"] == 0
    assert pages[f"{base}/old"]["status"] == 301
    assert pages[f"{base}/old"]["redirect"] == f"{base}/page/1"
    # An error page (titled "Page not found", with text and a link) is recorded with its
    # status and why, never as content: no title, text or links to index.
    missing = pages[f"{base}/missing"]
    assert missing["status"] == 404 and missing["error"] == "HTTP 404 Not Found"
    assert missing["fetched_at"].endswith("Z") and missing["depth"] == 1
    for record in (missing, pages[f"{base}/old"]):
        assert not {"title", "text", "links"} & set(record), record
    assert pages[f"{base}/slow"]["title"] == "Slow"
    report = pages[f"{base}/files/report.pdf"]
    assert report["skipped"] == "not HTML" and report["contentType"] == "application/pdf"


async def test_max_pages_holds_across_concurrent_page_jobs(contrib_app: App, site: Site) -> None:
    base, hits = site
    use_crawler(contrib_app)
    job, batch = await crawl(
        contrib_app, {"url": f"{base}/page/0", "maxPages": 10, "sitemap": False}, concurrency=10
    )
    pages = await pages_of(contrib_app, job.result["namespace"])
    assert len(pages) == 10 and batch.total == 10 and batch.completed == 10
    fetched = sum(n for path, n in hits.items() if path not in ("/robots.txt", "/sitemap.xml"))
    assert fetched == 10


async def test_max_depth_include_and_exclude(contrib_app: App, site: Site) -> None:
    base, _ = site
    use_crawler(contrib_app)
    job, _ = await crawl(
        contrib_app,
        {
            "url": f"{base}/page/0",
            "maxDepth": 1,
            "sitemap": False,
            "exclude": [r"/page/2$"],
            "include": [r"/page/"],
            "namespace": "shallow",
        },
    )
    pages = await pages_of(contrib_app, "shallow")
    assert set(pages) == {f"{base}/page/0", f"{base}/page/1", f"{base}/page/3"}
    assert job.result["namespace"] == "shallow"


async def test_a_user_sink_gets_every_page(contrib_app: App, site: Site) -> None:
    base, _ = site
    stored: dict[str, Any] = {}

    async def my_table(namespace: str, records: list[tuple[str, Any]]) -> None:
        stored.update(records)

    contrib_app.use(
        contrib.crawler(CrawlSettings(allowed_networks=["127.0.0.1/32"], delay=0.0), sink=my_table)
    )
    job, _ = await crawl(contrib_app, {"url": f"{base}/page/0", "maxPages": 5, "sitemap": False})
    assert len(stored) == 5 and await contrib_app.namespace(job.result["namespace"]).count() == 0


async def test_a_loopback_site_is_refused_by_default(contrib_app: App, site: Site) -> None:
    base, hits = site
    contrib_app.use(contrib.crawler(retry=NO_WAIT))
    job = await contrib_app.enqueue("crawl-website", {"url": f"{base}/page/0"})
    async with running_worker(contrib_app):

        async def failed() -> Any:
            found = await contrib_app.get_job(job.id)
            return found if found is not None and found.status.finished else None

        done = await wait_until(failed, timeout=30, what="the crawl to fail")
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "loopback" in (done.error or "") and hits == {}


async def test_robots_crawl_delay_spaces_requests_to_a_host(contrib_app: App) -> None:
    site_app = local_services.demo_site(crawl_delay=0.6)
    with local_services.serve(site_app) as base:
        use_crawler(contrib_app)
        await crawl(
            contrib_app, {"url": f"{base}/page/0", "maxPages": 4, "sitemap": False}, concurrency=4
        )
    pages = [t for path, t in site_app.state.times if path.startswith("/page/")]
    assert len(pages) == 4
    gaps = [b - a for a, b in itertools.pairwise(pages)]
    # The next request starts 0.6 s after the previous one ended, so the site sees it at
    # least 0.6 s after the previous one arrived, however late either left or arrived.
    assert min(gaps) >= 0.6, gaps


async def test_a_huge_crawl_delay_is_capped_and_waited_out_by_snoozing(
    contrib_app: App,
) -> None:
    """robots.txt asking for a day between requests: the next page job of that host is
    snoozed until its turn (a minute, the cap), no attempt spent and no worker slot held;
    it used to sleep inside the job until its timeout and fail its attempts."""
    site_app = local_services.demo_site(crawl_delay=86_400)
    with local_services.serve(site_app) as base:
        settings = CrawlSettings(allowed_networks=["127.0.0.1/32"], delay=0.0, timeout=5.0)
        contrib_app.use(contrib.crawler(settings, retry=NO_WAIT, timeout=3.0))
        job = await contrib_app.enqueue(
            "crawl-website", {"url": f"{base}/page/0", "maxPages": 2, "sitemap": False}
        )
        await drain(contrib_app)
    assert site_app.state.hits.get("/page/0") == 1 and "/page/1" not in site_app.state.hits
    [waiting] = [
        j
        for j in (await contrib_app.list_jobs(type="crawl-page")).jobs
        if j.payload["url"] == f"{base}/page/1"
    ]
    assert waiting.status is JobStatus.PENDING and waiting.attempts == 0, waiting.error
    last = waiting.history[-1]
    assert last.outcome == "snoozed" and last.finished_at is not None
    assert 50 <= (waiting.run_at - last.finished_at).total_seconds() <= 61
    assert (await contrib_app.get_job(job.id)).status is JobStatus.COMPLETED


def test_urls_are_normalized() -> None:
    assert (
        normalize_url("HTTP://Example.COM:80/a/./b/../c?x=1#frag") == "http://example.com/a/c?x=1"
    )
    assert normalize_url("https://example.com") == "https://example.com/"
    assert normalize_url("https://example.com:8443/p?") == "https://example.com:8443/p"
    assert normalize_url("../x", "https://example.com/a/b/c") == "https://example.com/a/x"
    assert normalize_url("mailto:a@b.c") is None and normalize_url("javascript:alert(1)") is None


def test_pages_are_parsed_for_title_text_and_links() -> None:
    html = b"""<html><head><title> T </title><base href="/docs/"><style>p{}</style></head>
    <body><p>Hello <b>world</b></p><a href="a">a</a><a href="a#x">again</a>
    <a href="mailto:x@y.z">mail</a><script>nope()</script></body></html>"""
    title, text, links = parse_page(html, "https://example.com/index.html", 1000)
    assert title == "T" and text == "Hello world a again mail"
    assert links == ["https://example.com/docs/a"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"maxPages": 5}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://example.com", "maxPages": 0}, "maxPages"),
        ({"url": "https://example.com", "max_pages": 5}, "max_pages"),
        ({"url": "https://example.com", "include": ["("]}, "include"),
        # Valid for Python's re, not for RE2 (which never backtracks): refused, saying why.
        ({"url": "https://e.com", "exclude": ["a", "(?!x)y"]}, "exclude: .*item 1: .*look-ahead"),
        ({"url": "https://e.com", "include": [r"(a)\1"]}, "include: .*backreferences"),
        ({"url": "https://e.com", "include": [r"\.pdf\Z"]}, r"include: .*write \\z"),
        ({"url": "https://e.com", "include": ["a"] * 51}, "include: .*the limit is 50"),
    ],
)
async def test_a_bad_payload_is_refused_at_enqueue_naming_the_field(
    contrib_app: App, payload: dict[str, Any], field: str
) -> None:
    contrib_app.use(contrib.crawler())
    with pytest.raises(InvalidPayload, match=field):
        await contrib_app.enqueue("crawl-website", payload)


async def test_a_page_job_with_patterns_re2_refuses_is_refused_at_enqueue(
    contrib_app: App,
) -> None:
    """crawl-page jobs can be enqueued by anyone (the HTTP API): their rules are checked too."""
    contrib_app.use(contrib.crawler())
    page = {"crawl": "c1", "url": "https://example.com/", "depth": 0}
    with pytest.raises(InvalidPayload, match=r"rules: .*exclude: item 0: .*look-behind"):
        await contrib_app.enqueue("crawl-page", {**page, "rules": {"exclude": ["(?<=a)b"]}})
    with pytest.raises(InvalidPayload, match=r"rules: .*include: not a list"):
        await contrib_app.enqueue("crawl-page", {**page, "rules": {"include": "abc"}})
