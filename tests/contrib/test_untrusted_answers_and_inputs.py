"""What the built-in job types take from outside, on both backends: payload fields that
become header lines are refused at enqueue for every kind of line break and control
character; an answer of any size from a server a payload names is read only as far as
needed; credentials never follow a redirect to another site; a secret echoed by a
server never reaches a job's error."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from helpers import wait_until
from job_helpers import drain_until, job_of
from taskflare import App, Backoff, InvalidPayload, JobStatus, contrib
from taskflare.contrib import AiSettings, CrawlSettings, ImportSettings, WebhookSettings

from .conftest import local_services

NO_WAIT = Backoff(base=0, cap=0, jitter=False)
LOCAL = ["127.0.0.1/32"]
HUGE = 256 << 20  # what the endless server offers: far more than any limit
CHUNK = b"x" * 65536
API_KEY = "sk-echoed-by-the-provider-0123456789"

# Every character that ends a line for someone (CR, LF, VT, FF, FS, GS, RS, NEL, LS, PS)
# or is a control character a header may not carry.
LINE_BREAKS = ["\r\n", "\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85"]
LINE_BREAKS += ["\u2028", "\u2029", "\x00", "\x7f"]


def injected(sep: str) -> str:
    return f"hello{sep}Bcc: attacker@example.com"


def email_payloads(sep: str) -> list[dict[str, Any]]:
    base = {"to": "user@example.com", "subject": "Hi", "body": "Hello"}
    return [
        {**base, "subject": injected(sep)},
        {**base, "to": f"user@example.com{sep}Bcc: attacker@example.com"},
        {**base, "cc": [f"c@example.com{sep}Bcc: attacker@example.com"]},
        {**base, "reply_to": f"r@example.com{sep}Bcc: attacker@example.com"},
        {**base, "from": f"Me <me@example.com>{sep}Bcc: attacker@example.com"},
        {**base, "headers": {"X-Campaign": injected(sep)}},
        {**base, "headers": {f"X{sep}Bcc": "attacker@example.com"}},
        {**base, "message_id": f"<id@example.com>{sep}Bcc: attacker@example.com <x@y>"},
        {**base, "attachments": [{"filename": f"a{sep}b.txt", "content": "aGk="}]},
    ]


def webhook_payloads(sep: str) -> list[dict[str, Any]]:
    url = "https://hooks.example.com/in"
    return [
        {"url": url, "headers": {"X-Token": injected(sep)}},
        {"url": url, "headers": {f"X{sep}Evil": "1"}},
        {"url": url, "id": f"msg_1{sep}X-Evil: 1"},
    ]


@pytest.mark.parametrize("sep", LINE_BREAKS, ids=[repr(s) for s in LINE_BREAKS])
async def test_header_fields_with_any_line_break_are_refused_at_enqueue(
    contrib_app: App, sep: str
) -> None:
    contrib_app.use(contrib.email(), contrib.webhooks())
    cases = [("send-email", p) for p in email_payloads(sep)]
    cases += [("webhook-delivery", p) for p in webhook_payloads(sep)]
    for job_type, payload in cases:
        with pytest.raises(InvalidPayload) as refused:
            await contrib_app.enqueue(job_type, payload)
        assert "invalid payload" in str(refused.value), payload
    assert (await contrib_app.list_jobs()).jobs == []


@pytest.mark.timeout(10)
async def test_a_message_id_made_to_backtrack_is_refused_at_once(contrib_app: App) -> None:
    """The check is linear: `<` and 100,000 `@` took the old pattern 16 s (quadratic)."""
    contrib_app.use(contrib.email())
    base = {"to": "user@example.com", "subject": "Hi", "body": "Hello"}
    with pytest.raises(InvalidPayload, match="message_id must look like"):
        await contrib_app.enqueue("send-email", {**base, "message_id": "<" + "@" * 100_000})
    job = await contrib_app.enqueue("send-email", {**base, "message_id": "<a.b@c@d>"})
    assert job.payload["message_id"] == "<a.b@c@d>"


async def test_an_attachment_type_outside_ascii_is_refused_at_enqueue(contrib_app: App) -> None:
    contrib_app.use(contrib.email())
    base = {"to": "user@example.com", "subject": "Hi", "body": "Hello"}
    for content_type in ("téxt/plain", "text/pla\u0131n", "text/plain; name=x", "text/"):
        attachment = {"filename": "a.txt", "content": "aGk=", "content_type": content_type}
        with pytest.raises(InvalidPayload, match="content_type"):
            await contrib_app.enqueue("send-email", {**base, "attachments": [attachment]})
    attachment = {"filename": "a.svg", "content": "aGk=", "content_type": "image/svg+xml"}
    assert await contrib_app.enqueue("send-email", {**base, "attachments": [attachment]})


async def test_a_message_that_cannot_be_built_fails_at_once(contrib_app: App) -> None:
    """An `email_from` setting with a line break: a retry would never build it either."""
    settings = contrib.EmailSettings(
        email_transport="console", email_from="me@example.com\nBcc: attacker@example.com"
    )
    contrib_app.use(contrib.email(settings, retry=NO_WAIT))
    job = await contrib_app.enqueue(
        "send-email", {"to": "user@example.com", "subject": "Hi", "body": "Hello"}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "cannot build the message" in (done.error or "")


# -- answers of any size ---------------------------------------------------------------------


class Endless:
    """A server whose answers are `HUGE` bytes; counts what it managed to send."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}
        self.closed: dict[str, bool] = {}
        self.lock = threading.Lock()

    def stream(self, request: Request, status: int = 200) -> Response:
        path = request.url.path

        async def body() -> AsyncIterator[bytes]:
            try:
                for _ in range(HUGE // len(CHUNK)):
                    if await request.is_disconnected():
                        break
                    with self.lock:
                        self.sent[path] = self.sent.get(path, 0) + len(CHUNK)
                    yield CHUNK
            finally:
                with self.lock:
                    self.closed[path] = True

        return StreamingResponse(body(), status_code=status, media_type="text/plain")

    def app(self) -> Starlette:
        async def anything(request: Request) -> Response:
            path = request.url.path
            if path == "/page":
                return PlainTextResponse("<html><title>t</title></html>", media_type="text/html")
            if path in ("/fail.ndjson", "/v1/embeddings"):
                return self.stream(request, status=503)
            return self.stream(request)

        return Starlette(routes=[Route("/{rest:path}", anything, methods=["GET", "POST"])])

    async def stopped_early(self, path: str) -> int:
        """Bytes the server sent for `path` once the client hung up (it must have)."""
        await wait_until(lambda: self.closed.get(path, False), timeout=60)
        return self.sent.get(path, 0)


@pytest.fixture
def endless() -> Iterator[tuple[str, Endless]]:
    server = Endless()
    with local_services.serve(server.app()) as url:
        yield url, server


async def test_answers_of_any_size_are_read_only_as_far_as_needed(
    contrib_app: App, endless: tuple[str, Endless]
) -> None:
    base, server = endless
    contrib_app.use(
        contrib.webhooks(
            WebhookSettings(allowed_networks=LOCAL, timeout=30), retry=NO_WAIT, max_attempts=1
        ),
        contrib.crawler(
            CrawlSettings(allowed_networks=LOCAL, delay=0, timeout=30),
            retry=NO_WAIT,
            max_attempts=1,
        ),
        contrib.imports(
            ImportSettings(allowed_networks=LOCAL, timeout=30), retry=NO_WAIT, max_attempts=1
        ),
        contrib.embeddings(AiSettings(base_url=f"{base}/v1", timeout=30), max_attempts=1),
    )
    webhook = await contrib_app.enqueue("webhook-delivery", {"url": f"{base}/hook"})
    crawl = await contrib_app.enqueue("crawl-website", {"url": f"{base}/page", "maxPages": 1})
    failing = await contrib_app.enqueue(
        "batch-import", {"url": f"{base}/fail.ndjson", "namespace": "n"}
    )
    embed = await contrib_app.enqueue("generate-embedding", {"text": "t", "model": "m"})

    done = await finished(contrib_app, webhook.id)
    assert done.status is JobStatus.COMPLETED and len(done.result["body"]) == 1024
    assert (await finished(contrib_app, crawl.id)).status is JobStatus.COMPLETED
    assert (await finished(contrib_app, failing.id)).status is JobStatus.FAILED
    assert (await finished(contrib_app, embed.id)).status is JobStatus.FAILED
    # robots.txt and the sitemap are endless too; each was read only up to its limit.
    for path in ("/hook", "/robots.txt", "/sitemap.xml", "/fail.ndjson", "/v1/embeddings"):
        assert await server.stopped_early(path) < HUGE // 4, path


# -- redirects and echoed secrets -----------------------------------------------------------


def echo_app() -> Starlette:
    async def redirect(request: Request) -> Response:
        to = request.query_params["to"]
        return Response(status_code=int(request.query_params["code"]), headers={"location": to})

    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {"method": request.method, "headers": dict(request.headers), "body": body.decode()}
        )

    async def refuse_key(request: Request) -> Response:
        # Some providers quote the key they refused.
        key = request.headers.get("authorization", "")
        return JSONResponse({"error": {"message": f"invalid key {key}"}}, status_code=401)

    async def products(request: Request) -> Response:
        return PlainTextResponse('{"sku": "a-1"}\n{"sku": "a-2"}\n')

    return Starlette(
        routes=[
            Route("/products.ndjson", products),
            Route("/redirect", redirect, methods=["GET", "POST"]),
            Route("/echo", echo, methods=["GET", "POST"]),
            Route("/v1/chat/completions", refuse_key, methods=["POST"]),
            Route("/v1/embeddings", refuse_key, methods=["POST"]),
        ]
    )


async def test_credentials_never_follow_a_redirect_to_another_site(contrib_app: App) -> None:
    with local_services.serve(echo_app()) as base:
        contrib_app.use(
            contrib.webhooks(
                WebhookSettings(allowed_networks=LOCAL, follow_redirects=True),
                retry=NO_WAIT,
                max_attempts=1,
            )
        )
        other_site = base.replace("127.0.0.1", "localhost") + "/echo"
        secret = {"Authorization": "Bearer receiver-token", "Cookie": "session=abc"}
        moved = await contrib_app.enqueue(
            "webhook-delivery",
            {"url": f"{base}/redirect?code=307&to={other_site}", "headers": secret},
        )
        same_site = await contrib_app.enqueue(
            "webhook-delivery", {"url": f"{base}/redirect?code=307&to=/echo", "headers": secret}
        )
        see_other = await contrib_app.enqueue(
            "webhook-delivery",
            {"url": f"{base}/redirect?code=303&to=/echo", "body": {"event": "x"}},
        )
        moved_done = await finished(contrib_app, moved.id)
        seen = moved_done.result["body"]
        assert moved_done.status is JobStatus.COMPLETED and '"method":"POST"' in seen
        assert "receiver-token" not in seen and "session=abc" not in seen
        kept = (await finished(contrib_app, same_site.id)).result["body"]
        assert "receiver-token" in kept and "session=abc" in kept
        other = (await finished(contrib_app, see_other.id)).result["body"]
        assert '"method":"GET"' in other and '"body":""' in other


async def test_an_import_follows_redirects_checking_each_target(contrib_app: App) -> None:
    """Data URLs often redirect (release assets, signed links): followed, every hop
    checked like the first, so a redirect cannot lead an import inside the network."""
    with local_services.serve(echo_app()) as base:
        contrib_app.use(
            contrib.imports(ImportSettings(allowed_networks=LOCAL), retry=NO_WAIT, max_attempts=1)
        )
        moved = await contrib_app.enqueue(
            "batch-import",
            {
                "url": f"{base}/redirect?code=302&to=/products.ndjson",
                "namespace": "p",
                "key": "sku",
            },
        )
        done = await finished(contrib_app, moved.id)
        assert done.status is JobStatus.COMPLETED and done.result["imported"] == 2
        for target in (
            "http://169.254.169.254/latest",
            "http://10.0.0.1/x.ndjson",
            "file:///etc/passwd",
        ):
            job = await contrib_app.enqueue(
                "batch-import", {"url": f"{base}/redirect?code=302&to={target}", "namespace": "q"}
            )
            failed = await finished(contrib_app, job.id)
            assert failed.status is JobStatus.FAILED and failed.attempts == 1, target
            assert "refused" in (failed.error or "") or "http" in (failed.error or ""), failed.error


async def test_a_key_the_provider_echoes_never_reaches_the_job(
    contrib_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    with local_services.serve(echo_app()) as base:
        settings = AiSettings(base_url=f"{base}/v1", api_key=API_KEY)
        contrib_app.use(
            contrib.content(settings, max_attempts=1), contrib.embeddings(settings, max_attempts=1)
        )
        jobs = [
            await contrib_app.enqueue("generate-content", {"prompt": "p", "model": "m"}),
            await contrib_app.enqueue(
                "generate-content", {"prompt": "p", "model": "m", "stream": True}
            ),
            await contrib_app.enqueue("generate-embedding", {"text": "t", "model": "m"}),
        ]
        for job in jobs:
            done = await finished(contrib_app, job.id)
            assert done.status is JobStatus.FAILED
            assert "invalid key Bearer ***" in (done.error or "")
            assert API_KEY not in repr(done)
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("::7f00:1", "loopback"),  # IPv4-compatible
        ("::ffff:0:7f00:1", "loopback"),  # IPv4-translated (SIIT)
        ("64:ff9b::7f00:1", "loopback"),  # NAT64: the gateway delivers to 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 to 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 to 169.254.169.254
        ("2002:a00:1::1", "private"),  # 6to4 of 10.0.0.1
        ("2002:a9fe:a9fe::1", "cloud metadata"),  # 6to4 of 169.254.169.254
        ("fec0::1", "site-local"),
        ("64:ff9b:1::a00:1", "local NAT64"),
    ],
)
def test_ipv6_addresses_carrying_an_internal_ipv4_address_are_refused(
    address: str, inside: str
) -> None:
    import ipaddress

    from taskflare.contrib import DestinationPolicy

    reason = DestinationPolicy().refusal(ipaddress.ip_address(address))
    assert reason is not None and inside in reason, (address, reason)
    # The same prefixes carrying a public IPv4 address stay reachable (IPv6-only hosts).
    for public in ("64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8"):
        assert DestinationPolicy().refusal(ipaddress.ip_address(public)) is None, public
    if "metadata" not in inside:
        assert DestinationPolicy(allow_private=True).refusal(ipaddress.ip_address(address)) is None


def test_an_smtp_reply_quoting_the_password_is_redacted() -> None:
    import aiosmtplib

    from taskflare.contrib.email import EmailSettings, _Smtp, _smtp_failure

    smtp = _Smtp(EmailSettings(smtp_url="smtp://mailer:p%40ss-w0rd-42@127.0.0.1:2525"))
    failure = _smtp_failure(
        aiosmtplib.SMTPResponseException(535, "5.7.8 bad login mailer/p@ss-w0rd-42"), smtp
    )
    assert "p@ss-w0rd-42" not in str(failure) and "***" in str(failure)


async def finished(app: App, job_id: str, timeout: float = 60.0) -> Any:
    async def done() -> Any:
        job = await job_of(app, job_id)
        return job if job.status.finished else None

    return await drain_until(app, done, timeout=timeout, what=f"job {job_id} to finish")


async def test_a_host_that_does_not_resolve_is_named_in_the_job_error(contrib_app: App) -> None:
    """Every type that fetches a URL a payload names says which host did not resolve
    (`getaddrinfo`'s bare `gaierror: [Errno -2] Name or service not known` names none),
    and the job is retried as a network error, not failed as the payload's fault."""
    host = "no-such-host.invalid"  # RFC 2606: never resolves
    contrib_app.use(
        contrib.crawler(retry=NO_WAIT, max_attempts=1),
        contrib.imports(retry=NO_WAIT, max_attempts=1),
        contrib.webhooks(retry=NO_WAIT, max_attempts=1),
    )
    jobs = [
        await contrib_app.enqueue("crawl-website", {"url": f"https://{host}/"}),
        await contrib_app.enqueue(
            "batch-import", {"url": f"https://{host}/items.ndjson", "namespace": "n"}
        ),
        await contrib_app.enqueue("webhook-delivery", {"url": f"https://{host}/hook"}),
    ]
    for job in jobs:
        done = await finished(contrib_app, job.id)
        assert done.status is JobStatus.FAILED, (done.type, done.error)
        assert host in (done.error or ""), (done.type, done.error)
        assert not (done.error or "").startswith(("PermanentError", "BlockedDestination"))
