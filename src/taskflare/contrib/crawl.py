"""`crawl-website`: crawl a site into a namespace, one job per page, spread across workers.

The `crawl-website` job reads robots.txt and the sitemap, records the start pages in the
crawl's frontier and enqueues one `crawl-page` job for each, all in one batch (its id is
the crawl job's id, so `app.get_batch(id)` / `GET /batches/{id}` show the crawl's
progress and page count). Each page job fetches one page, stores it (url, status, title,
text, links, fetched_at; a page without content, such as a 404, has no title, text or
links but says why: `redirect`, `error` or `skipped`) and enqueues the new pages it links
to.

The frontier is a namespace of the document store (`<namespace>.frontier`) in which a
URL is inserted once, atomically and only while fewer than `maxPages` URLs are in it:
so two workers discovering one link agree on who enqueues it, a page is fetched by one
job only, and `maxPages` holds across workers. Page jobs carry an idempotency key per
URL, and a job that died after claiming a link enqueues it again when it is retried, so
a worker killed mid-crawl loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ..context import JobContext
from ..documents import MAX_KEY_BYTES, check_namespace
from ..errors import InvalidDocument
from ..flow import Snooze
from ..patterns import InvalidPattern, Pattern, compile_pattern
from ..retry import Backoff, PermanentError
from .common import (
    ContribSettings,
    JobOptions,
    Payload,
    Sink,
    check_sink,
    namespace_sink,
    raise_for_http_status,
    register,
)
from .net import (
    DestinationPolicy,
    check_url,
    pinned_fetch,
    pinned_request,
    read_limited,
    redirect_target,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from ..app import App

PAGE_TYPE = "crawl-page"
IDEMPOTENCY_TTL = 30 * 86_400.0
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_LOC = re.compile(r"<loc>\s*([^<\s]+)\s*</loc>", re.IGNORECASE)
MAX_SITEMAPS = 10
MAX_PATTERNS = 50  # in `include`, and in `exclude`
ROBOTS_TTL = 3600.0  # [s] a worker reads a site's robots.txt again after this long
MAX_ROBOTS_BYTES = 500 * 1024  # what of a robots.txt is read (Google's limit, RFC 9309)
MAX_CRAWL_DELAY = 60.0  # [s] the longest robots.txt Crawl-delay honoured
MAX_TURN_WAIT = 5.0  # [s] a page job waits this long for its host's turn; longer: snoozed


def normalize_url(url: str, base: str | None = None) -> str | None:
    """`url` (resolved against `base`) in one canonical form, or None if it is not an
    http(s) URL: lower-case scheme and host, no default port, no fragment, dot segments
    resolved, an empty path as `/`, an empty query dropped."""
    try:
        joined = urljoin(base, url.strip()) if base else url.strip()
        parts = urlsplit(joined)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        scheme = parts.scheme.lower()
        host = parts.hostname.lower().rstrip(".")
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
        default = 443 if scheme == "https" else 80
        netloc = host if port in (None, default) else f"{host}:{port}"
        path = urlsplit(urljoin(f"{scheme}://{netloc}/", parts.path or "/")).path or "/"
        return urlunsplit((scheme, netloc, path, parts.query, ""))
    except ValueError:
        return None


def check_patterns(patterns: list[str] | None) -> list[str] | None:
    """`patterns` (an `include` or `exclude` list) if each compiles for RE2
    (`taskflare.patterns`) and there are at most `MAX_PATTERNS`; else `ValueError` naming
    the pattern's index and why."""
    if patterns is None:
        return None
    if len(patterns) > MAX_PATTERNS:
        raise ValueError(f"{len(patterns)} patterns; the limit is {MAX_PATTERNS}")
    for index, pattern in enumerate(patterns):
        try:
            compile_pattern(pattern)
        except InvalidPattern as exc:
            raise ValueError(f"item {index}: {exc}") from None
    return patterns


def _site(host: str) -> str:
    """A host without a leading `www.`: the same site for `sameSite`."""
    return host[4:] if host.startswith("www.") else host


class CrawlWebsite(Payload):
    """The `crawl-website` payload (the Queue Service's shape: `{"url", "maxPages"}`)."""

    url: str
    maxPages: int = Field(default=100, ge=1, le=100_000)
    maxDepth: int | None = Field(default=None, ge=0, le=1000)
    sameSite: bool = True
    include: list[str] | None = None
    exclude: list[str] | None = None
    sitemap: bool = True
    namespace: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value)
        if normalize_url(value) is None:
            raise ValueError("not an http(s) URL")
        return value

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, value: list[str] | None) -> list[str] | None:
        return check_patterns(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_namespace(value)
            except InvalidDocument as exc:
                raise ValueError(str(exc)) from None
        return value


class CrawlPage(Payload):
    """A `crawl-page` job: one page of a crawl (enqueued by the crawl itself)."""

    crawl: str
    url: str
    depth: int = Field(ge=0)
    rules: dict[str, Any]

    @field_validator("rules")
    @classmethod
    def _rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        for field in ("include", "exclude"):
            patterns = value.get(field)
            if patterns is not None and not isinstance(patterns, list):
                raise ValueError(f"{field}: not a list of regular expressions")
            try:
                check_patterns(patterns)
            except ValueError as exc:
                raise ValueError(f"{field}: {exc}") from None
        return value


class CrawlSettings(ContribSettings):
    """How the crawler fetches (each field also from `TASKFLARE_CRAWL_<NAME>`).

    `delay` [s]: at least this long between two requests to one host from one worker
    process, from the end of one to the start of the next (robots.txt's Crawl-delay
    when longer). `user_agent`: sent, and matched against robots.txt. `timeout` [s]
    per request. `max_page_bytes`: the most of a page read. `allow_private`,
    `allowed_networks`: which addresses may be crawled (see webhook-delivery).
    """

    model_config = SettingsConfigDict(env_prefix="TASKFLARE_CRAWL_", extra="ignore", frozen=True)

    delay: float = Field(default=1.0, ge=0)
    user_agent: str = "taskflare-crawler"
    timeout: float = Field(default=20.0, gt=0)
    max_page_bytes: int = Field(default=5 << 20, ge=1024)
    max_text_chars: int = Field(default=100_000, ge=0)
    allow_private: bool = False
    allowed_networks: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rules:
    """What a crawl may follow: stored in every page job of the crawl, its `include` and
    `exclude` patterns compiled (RE2: linear in the URL, whatever the pattern)."""

    crawl: str
    namespace: str
    root: str
    max_pages: int
    max_depth: int | None
    same_site: bool
    include: tuple[Pattern, ...]
    exclude: tuple[Pattern, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "crawl": self.crawl,
            "namespace": self.namespace,
            "root": self.root,
            "maxPages": self.max_pages,
            "maxDepth": self.max_depth,
            "sameSite": self.same_site,
            "include": [p.source for p in self.include],
            "exclude": [p.source for p in self.exclude],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rules:
        """The rules of `to_json`; `InvalidPattern` for a pattern RE2 does not run (only
        in a page job stored before patterns ran on RE2: enqueue refuses them now)."""
        return cls(
            data["crawl"],
            data["namespace"],
            data["root"],
            int(data["maxPages"]),
            data.get("maxDepth"),
            bool(data["sameSite"]),
            compile_all(data.get("include")),
            compile_all(data.get("exclude")),
        )

    @property
    def frontier(self) -> str:
        """The namespace of the crawl's frontier (every URL claimed, once)."""
        return f"{self.namespace}.frontier"[:200]

    def follows(self, url: str, depth: int) -> bool:
        """Whether a link at `depth` is part of the crawl (robots.txt aside)."""
        if self.max_depth is not None and depth > self.max_depth:
            return False
        if len(url.encode()) > MAX_KEY_BYTES:
            return False
        if self.same_site:
            host = urlsplit(url).hostname or ""
            if _site(host) != _site(urlsplit(self.root).hostname or ""):
                return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)


def compile_all(patterns: Iterable[str] | None) -> tuple[Pattern, ...]:
    """Each of `patterns` compiled (`InvalidPattern` for one that does not compile)."""
    return tuple(compile_pattern(p) for p in patterns or ())


def _select(urls: Iterable[str], keep: Callable[[str], bool], stop: threading.Event) -> list[str]:
    found = []
    for url in urls:
        if stop.is_set():
            break
        if keep(url):
            found.append(url)
    return found


async def _selected(urls: Iterable[str], keep: Callable[[str], bool]) -> list[str]:
    """The `urls` that `keep` accepts, in order, decided in a worker thread: a page's
    links against the crawl's patterns (RE2 releases the GIL) and against robots.txt
    rules (protego, Python: the loop still gets the GIL every switch interval), so a page
    of many thousand links and a site's 500 KiB robots.txt never hold up the event loop.
    A cancelled caller (the job timed out) stops the thread at the next URL."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_select, urls, keep, stop)
    finally:
        stop.set()


class Politeness:
    """Per host: robots.txt rules (read once an hour by each process) and the time of the
    next allowed request."""

    def __init__(self) -> None:
        self._robots: dict[str, tuple[float, Any]] = {}
        self._next: dict[tuple[int, str], float] = {}
        # Per event loop, held weakly: a lock of a loop that has ended is never handed to
        # a new loop that happens to get the same id().
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    async def robots(
        self, origin: str, client: httpx.AsyncClient, policy: DestinationPolicy
    ) -> Any:
        """The parsed robots.txt of `origin` (scheme://host[:port]); allow-all if absent."""
        from protego import Protego

        cached = self._robots.get(origin)
        found = None
        if cached is not None and time.monotonic() - cached[0] < ROBOTS_TTL:
            found = cached[1]
        if found is None:
            text = ""
            try:
                response, raw = await pinned_fetch(
                    client, "GET", httpx.URL(origin + "/robots.txt"), policy, MAX_ROBOTS_BYTES
                )
                if response.status_code == 200:
                    text = raw.decode("utf-8", "replace")
                elif response.status_code >= 500:
                    # Google's rule: a server error on robots.txt means "crawl nothing now".
                    raise RuntimeError(f"{origin}/robots.txt answered {response.status_code}")
            except httpx.HTTPError as exc:
                raise RuntimeError(
                    f"cannot fetch {origin}/robots.txt: {type(exc).__name__}"
                ) from None
            found = Protego.parse(text)
            self._robots[origin] = (time.monotonic(), found)
        return found

    @contextlib.asynccontextmanager
    async def turn(self, host: str, delay: float) -> AsyncIterator[None]:
        """One request to `host`: starts `delay` [s] after the previous one from this
        process ended, and the next waits for this one to end. Counting from the end
        (as a polite crawler may) keeps the site's own view of the gap at least `delay`
        however long a request takes to leave or to arrive. A turn more than
        `MAX_TURN_WAIT` away raises `Snooze` until then (no attempt spent)."""
        loop = asyncio.get_running_loop()
        key = (id(loop), host)
        lock = self._locks.setdefault(loop, {}).setdefault(host, asyncio.Lock())
        async with lock:
            wait = self._next.get(key, 0.0) - time.monotonic()
            if wait > MAX_TURN_WAIT:  # come back then, rather than hold a worker slot
                raise Snooze(wait, f"{host}'s next request is due in {wait:.1f}s")
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._next[key] = time.monotonic() + delay


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _key_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def parse_page(html: bytes, url: str, max_text: int) -> tuple[str | None, str, list[str]]:
    """Title, visible text and normalized links (in order, once each) of an HTML page."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node is not None else None
    base = url
    base_node = tree.css_first("base[href]")
    if base_node is not None and base_node.attributes.get("href"):
        base = urljoin(url, base_node.attributes["href"] or "")
    links: list[str] = []
    seen: set[str] = set()
    for node in tree.css("a[href]"):
        href = node.attributes.get("href") or ""
        normalized = normalize_url(href, base)
        if normalized is not None and normalized not in seen:
            seen.add(normalized)
            links.append(normalized)
    for node in tree.css("script, style, noscript, template"):
        node.decompose()
    body = tree.body
    text = " ".join((body.text(separator=" ") if body is not None else "").split())
    return title, text[:max_text], links


class Crawler:
    """The two job types of a crawl and what they share (settings, politeness, sink)."""

    def __init__(self, app: App, settings: CrawlSettings, sink: Sink) -> None:
        self.app = app
        self.settings = settings
        self.sink = sink
        self.policy = DestinationPolicy.create(settings.allow_private, settings.allowed_networks)
        self.polite = Politeness()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.settings.timeout,
            trust_env=False,
            headers={"User-Agent": self.settings.user_agent},
        )

    # -- the crawl ------------------------------------------------------------------------

    async def start(self, payload: CrawlWebsite, ctx: JobContext) -> dict[str, Any]:
        """Seed the frontier with the start URL and the sitemap's pages; enqueue them."""
        root = normalize_url(payload.url)
        assert root is not None
        rules = Rules(
            crawl=ctx.job_id,
            namespace=payload.namespace or f"crawl.{ctx.job_id}",
            root=root,
            max_pages=payload.maxPages,
            max_depth=payload.maxDepth,
            same_site=payload.sameSite,
            include=compile_all(payload.include),
            exclude=compile_all(payload.exclude),
        )
        if await self.app.get_batch(rules.crawl) is None:
            await self.app.jobs.create_batch(rules.crawl, PAGE_TYPE, 0)
        seeds = [root]
        async with self.client() as client:
            robots = await self.polite.robots(_origin(root), client, self.policy)
            if payload.sitemap:
                seeds += await self._sitemap_urls(root, robots, client)
        agent = self.settings.user_agent

        def keep(url: str) -> bool:
            return (url == root or rules.follows(url, 0)) and bool(robots.can_fetch(url, agent))

        enqueued = 0
        for url in await _selected(dict.fromkeys(seeds), keep):  # once each, in order
            outcome = await self._claim(rules, url, 0, ctx.job_id)
            if outcome is None:
                break
            enqueued += outcome
        return {
            "crawlId": rules.crawl,
            "batchId": rules.crawl,
            "namespace": rules.namespace,
            "startUrl": root,
            "seeded": enqueued,
            "maxPages": rules.max_pages,
        }

    async def _sitemap_urls(self, root: str, robots: Any, client: httpx.AsyncClient) -> list[str]:
        """Page URLs listed by the site's sitemaps (robots.txt's, else /sitemap.xml)."""
        pending = list(robots.sitemaps) or [_origin(root) + "/sitemap.xml"]
        pages: list[str] = []
        fetched = 0
        while pending and fetched < MAX_SITEMAPS:
            location = normalize_url(pending.pop(0))
            if location is None:
                continue
            fetched += 1
            try:
                response, raw = await pinned_fetch(
                    client, "GET", httpx.URL(location), self.policy, self.settings.max_page_bytes
                )
            except (httpx.HTTPError, OSError, PermanentError):
                continue
            if response.status_code != 200:
                continue
            body = raw.decode("utf-8", "replace")
            for loc in _LOC.findall(body):
                url = normalize_url(loc.replace("&amp;", "&"))
                if url is None:
                    continue
                if "<sitemapindex" in body:
                    pending.append(url)
                else:
                    pages.append(url)
        return pages

    async def _claim(self, rules: Rules, url: str, depth: int, by: str) -> int | None:
        """Claim `url` in the frontier and enqueue its page job: 1 if this job enqueued it,
        0 if another job owns it, None when the crawl is full (`maxPages` reached)."""
        frontier = self.app.namespace(rules.frontier)
        if not await frontier.insert(url, {"by": by, "depth": depth}, max_count=rules.max_pages):
            existing = await frontier.get(url)
            if existing is None:
                return None  # full
            if existing.value.get("by") != by:
                return 0  # someone else enqueues it
            # This job claimed it in an earlier attempt and may have died before
            # enqueueing: enqueue again (the idempotency key makes it once).
        await self.app.enqueue(
            PAGE_TYPE,
            {"crawl": rules.crawl, "url": url, "depth": depth, "rules": rules.to_json()},
            idempotency_key=f"{rules.crawl}:{_key_digest(url)}",
            idempotency_ttl=IDEMPOTENCY_TTL,
            batch_id=rules.crawl,
        )
        await self.app.jobs.raise_batch_total(rules.crawl, await frontier.count())
        return 1

    # -- one page -------------------------------------------------------------------------

    async def page(self, payload: CrawlPage, ctx: JobContext) -> dict[str, Any]:
        """Fetch one page, store it, enqueue the pages it links to."""
        try:
            rules = Rules.from_json(payload.rules)
        except InvalidPattern as exc:
            raise PermanentError(f"rules: {exc}") from None
        url = payload.url
        host = urlsplit(url).hostname or ""
        async with self.client() as client:
            robots = await self.polite.robots(_origin(url), client, self.policy)
            agent = self.settings.user_agent
            # A site's Crawl-delay, up to a minute: a robots.txt asking for a day between
            # requests would otherwise park every page job of the crawl for a day each.
            asked = min(float(robots.crawl_delay(agent) or 0), MAX_CRAWL_DELAY)
            delay = max(self.settings.delay, asked)
            async with self.polite.turn(host, delay):
                record, links = await self._fetch(client, url)
            record["depth"] = payload.depth
            await self.sink(rules.namespace, [(url, record)])
            here, depth = _origin(url), payload.depth + 1

            def keep(link: str) -> bool:
                if not rules.follows(link, depth):
                    return False
                return _origin(link) != here or bool(robots.can_fetch(link, agent))

            discovered = 0
            for link in await _selected(links, keep):
                if _origin(link) != here:  # its site's robots.txt, read (once an hour) now
                    there = await self.polite.robots(_origin(link), client, self.policy)
                    if not await asyncio.to_thread(there.can_fetch, link, agent):
                        continue
                outcome = await self._claim(rules, link, payload.depth + 1, ctx.job_id)
                if outcome is None:
                    break
                discovered += outcome
        result = {
            "url": url,
            "status": record["status"],
            "title": record.get("title"),
            "links": len(links),
            "enqueued": discovered,
        }
        if "error" in record:
            result["error"] = record["error"]
        return result

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> tuple[dict[str, Any], list[str]]:
        """The stored record of `url` and the links to follow from it. A redirect is not
        followed here: its target is a link, so it is fetched once, by its own job."""
        fetched_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        try:
            response = await pinned_request(client, "GET", httpx.URL(url), self.policy)
        except httpx.TimeoutException:
            raise RuntimeError(f"{url} did not answer within {self.settings.timeout:g}s") from None
        except httpx.TransportError as exc:
            raise RuntimeError(f"cannot fetch {url}: {type(exc).__name__}") from None
        try:
            status = response.status_code
            content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            # Only a page with content gets `title`, `text` and `links`; any other answer
            # is recorded with its status and why it has none (`redirect`, `error`,
            # `skipped`), so an error page is never indexed as an empty page.
            record: dict[str, Any] = {
                "url": url,
                "status": status,
                "fetched_at": fetched_at,
                "contentType": content_type or None,
            }
            if status in (408, 429) or status >= 500:
                raise_for_http_status(status, response.headers, url)
            target = redirect_target(response, httpx.URL(url))
            if target is not None:
                location = normalize_url(str(target))
                record["redirect"] = location
                return record, [location] if location else []
            if not 200 <= status < 300:  # 404, 410, 403...: the page is not there for us
                record["error"] = _status_text(status)
                return record, []
            if status in (204, 205):
                record["skipped"] = "no content"
                return record, []
            if content_type not in _HTML_TYPES:
                record["skipped"] = "not HTML"
                return record, []
            body = await read_limited(response, self.settings.max_page_bytes)
        finally:
            await response.aclose()
        title, text, links = parse_page(body, url, self.settings.max_text_chars)
        record.update(title=title, text=text, links=links)
        return record, links


def _status_text(status: int) -> str:
    """`HTTP 404 Not Found`: a status with its reason phrase when it has a standard one."""
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class CrawlExtension:
    """`crawl-website` and `crawl-page`, installed by `app.use(contrib.crawler(...))`."""

    def __init__(
        self,
        settings: CrawlSettings | None,
        options: JobOptions,
        page_options: JobOptions,
        sink: Sink | None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.page_options = page_options
        self.sink = check_sink(sink)

    def install(self, app: App) -> None:
        """Register `crawl-website` and `crawl-page` on `app`."""
        holder: dict[str, Crawler] = {}
        sink = self.sink or namespace_sink(app)

        def crawler() -> Crawler:
            if "c" not in holder:
                holder["c"] = Crawler(app, self.settings or CrawlSettings(), sink)
            return holder["c"]

        async def crawl_website(payload: CrawlWebsite, ctx: JobContext) -> dict[str, Any]:
            return await crawler().start(payload, ctx)

        async def crawl_page(payload: CrawlPage, ctx: JobContext) -> dict[str, Any]:
            return await crawler().page(payload, ctx)

        register(app, self.options, crawl_website)
        register(app, self.page_options, crawl_page)


def crawler(
    settings: CrawlSettings | None = None,
    *,
    sink: Sink | None = None,
    name: str = "crawl-website",
    queue: str = "crawl",
    max_attempts: int = 3,
    page_max_attempts: int = 3,
    timeout: float | None = 120.0,
    retry: Backoff | None = None,
) -> CrawlExtension:
    """The `crawl-website` job type (and its `crawl-page` jobs): `app.use(contrib.crawler())`.

    `sink`: an async callable `(namespace, [(url, page), ...])` to store pages in your own
    tables instead of the crawl's namespace.
    """
    backoff = retry or Backoff(base=10, cap=900)
    options = JobOptions(name, queue, max_attempts, timeout, retry=backoff)
    page_options = JobOptions(PAGE_TYPE, queue, page_max_attempts, timeout, retry=backoff)
    return CrawlExtension(settings, options, page_options, sink)
