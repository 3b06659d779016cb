"""webhook-delivery against a real local receiver: Standard Webhooks signatures with one
webhook-id across retries, status handling, Retry-After, redirects, SSRF refusals and the
per-host concurrency limit."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import pytest
from standardwebhooks.webhooks import Webhook

from helpers import running_worker, wait_until
from job_helpers import drain_until, job_of
from taskflare import App, Backoff, InvalidPayload, JobStatus, WorkerConfig, contrib
from taskflare.contrib import DestinationPolicy, WebhookSettings
from taskflare.testing import drain

from .conftest import local_services

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NO_WAIT = Backoff(base=0, cap=0, jitter=False)
LOCAL = ["127.0.0.1/32"]

Receiver = tuple[str, local_services.Received]


def use_webhooks(app: App, **settings: Any) -> None:
    # A timeout no answer of the local receiver reaches, however loaded the machine: a
    # test about timeouts gives its own, shorter than the receiver's slow answer.
    values: dict[str, Any] = {"secret": SECRET, "allowed_networks": LOCAL, "timeout": 30.0}
    values.update(settings)
    app.use(contrib.webhooks(WebhookSettings(**values), retry=NO_WAIT, max_attempts=3))


async def finished(app: App, job_id: str, timeout: float = 15.0) -> Any:
    async def done() -> Any:
        job = await job_of(app, job_id)
        return job if job.status.finished else None

    return await drain_until(app, done, timeout=timeout, what=f"job {job_id} to finish")


async def test_a_signed_delivery_is_verified_by_the_receiver(
    contrib_app: App, received: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    base, seen = received
    use_webhooks(contrib_app)
    body = {"event": "order.created", "order": {"id": 42}}
    job = await contrib_app.enqueue(
        "webhook-delivery", {"url": f"{base}/ok", "method": "POST", "body": body}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    [request] = seen.of("/ok")
    assert request["headers"]["content-type"] == "application/json"
    verified = Webhook(SECRET).verify(request["body"], request["headers"])
    assert verified == body
    assert request["headers"]["webhook-id"] == job.payload["id"] == done.result["webhookId"]
    assert done.result["status"] == 200 and done.result["body"] == "thanks"
    shown = str(done.to_dict()) + caplog.text
    assert SECRET not in shown and SECRET.removeprefix("whsec_") not in shown


async def test_a_user_agent_in_the_payload_replaces_the_default_in_any_case(
    contrib_app: App, received: Receiver
) -> None:
    """`{"user-agent": ...}` was sent beside the default `User-Agent` (two lines, one
    header): the payload's, whatever its case, is the only one sent."""
    base, seen = received
    use_webhooks(contrib_app)
    for name in ("user-agent", "User-Agent"):
        job = await contrib_app.enqueue(
            "webhook-delivery", {"url": f"{base}/ok", "body": {}, "headers": {name: "shop/2.0"}}
        )
        assert (await finished(contrib_app, job.id)).status is JobStatus.COMPLETED
    for request in seen.of("/ok"):
        agents = [v for k, v in request["header_lines"] if k.lower() == "user-agent"]
        assert agents == ["shop/2.0"], request["header_lines"]


async def test_a_503_is_retried_with_the_same_webhook_id_and_a_fresh_signature(
    contrib_app: App, received: Receiver
) -> None:
    base, seen = received
    use_webhooks(contrib_app)
    job = await contrib_app.enqueue("webhook-delivery", {"url": f"{base}/flaky", "body": {"n": 1}})
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    first, second = seen.of("/flaky")
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    for request in (first, second):
        Webhook(SECRET).verify(request["body"], request["headers"])


async def test_429_waits_for_retry_after(contrib_app: App, received: Receiver) -> None:
    base, seen = received
    use_webhooks(contrib_app)
    job = await contrib_app.enqueue("webhook-delivery", {"url": f"{base}/busy", "body": {}})
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    first, second = done.history[0], done.history[1]
    assert first.finished_at is not None and second.started_at is not None
    assert (second.started_at - first.finished_at).total_seconds() >= 0.9
    assert len(seen.of("/busy")) == 2


THIRTY_SECONDS = Backoff(base=15, cap=30, jitter=False)  # 30 s after the first attempt


def retry_delay(job: Any) -> float:
    """Seconds between the end of the job's last attempt and when it may run again."""
    last = job.history[-1]
    assert last.finished_at is not None
    return float((job.run_at - last.finished_at).total_seconds())


@pytest.mark.parametrize(
    ("after", "delay"),
    [
        ("0", 30),  # "now": the backoff still spaces the attempts
        ("-5", 30),  # negative: ignored
        ("Wed, 21 Oct 2015 07:28:00 GMT", 30),  # a date already past: ignored
        ("soon", 30),  # not a number or a date: ignored
        ("1e400", 30),  # not finite: ignored
        ("5", 30),  # shorter than the backoff: the backoff
        ("120", 120),  # longer: honoured
        ("99999999", 3600),  # three years: capped at an hour
    ],
)
async def test_a_retry_after_never_spaces_attempts_closer_than_the_backoff(
    contrib_app: App, received: Receiver, after: str, delay: float
) -> None:
    """A receiver answering `429 Retry-After: 0` (or a negative or past value) used to
    get every attempt at once: 8 in about 2 s. Its delay can only lengthen the wait."""
    base, seen = received
    settings = WebhookSettings(allowed_networks=LOCAL, timeout=2.0)
    contrib_app.use(contrib.webhooks(settings, retry=THIRTY_SECONDS, max_attempts=8))
    url = f"{base}/throttled?after={quote(after)}"
    job = await contrib_app.enqueue("webhook-delivery", {"url": url, "body": {}})
    await drain(contrib_app)
    retried = await job_of(contrib_app, job.id)
    assert retried.status is JobStatus.PENDING and retried.attempts == 1, retried.error
    assert retry_delay(retried) == pytest.approx(delay, abs=1)
    assert len(seen.of("/throttled")) == 1


@pytest.mark.parametrize(("path", "status"), [("/gone", 410), ("/bad", 400)])
async def test_410_and_other_4xx_fail_at_once(
    contrib_app: App, received: Receiver, path: str, status: int
) -> None:
    base, seen = received
    use_webhooks(contrib_app)
    job = await contrib_app.enqueue("webhook-delivery", {"url": f"{base}{path}", "body": {}})
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert str(status) in (done.error or "")
    assert len(seen.of(path)) == 1


async def test_a_timeout_is_retried(contrib_app: App, received: Receiver) -> None:
    base, _ = received
    # A loaded machine only makes the slow answer (0.5 s) later than the 0.1 s timeout.
    use_webhooks(contrib_app, timeout=0.1)
    slow = await contrib_app.enqueue("webhook-delivery", {"url": f"{base}/slow", "body": {}})
    done = await finished(contrib_app, slow.id)
    assert done.status is JobStatus.FAILED and done.attempts == 3
    assert "did not answer within 0.1s" in (done.error or "")


async def test_the_first_kb_of_the_body_is_kept(contrib_app: App, received: Receiver) -> None:
    base, seen = received
    use_webhooks(contrib_app)  # not the 0.1 s above: an answer at once may take longer
    big = await contrib_app.enqueue("webhook-delivery", {"url": f"{base}/big", "method": "PUT"})
    done = await finished(contrib_app, big.id)
    assert done.result["body"] == "x" * 1024 and seen.of("/big")[0]["method"] == "PUT"


async def test_redirects_are_not_followed_unless_allowed(
    contrib_app: App, received: Receiver
) -> None:
    base, seen = received
    use_webhooks(contrib_app)
    job = await contrib_app.enqueue("webhook-delivery", {"url": f"{base}/redirect", "body": {}})
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "not followed" in (done.error or "") and seen.of("/ok") == []

    other = App(contrib_app.database_url)
    try:
        other.use(
            contrib.webhooks(
                WebhookSettings(allowed_networks=LOCAL, follow_redirects=True), name="follow"
            )
        )
        job = await other.enqueue("follow", {"url": f"{base}/redirect", "body": {}})
        done = await finished(other, job.id)
        assert done.status is JobStatus.COMPLETED and done.result["url"].endswith("/ok")
    finally:
        await other.close()


async def test_loopback_private_and_metadata_addresses_are_refused_by_default(
    contrib_app: App, received: Receiver
) -> None:
    base, seen = received
    contrib_app.use(contrib.webhooks(WebhookSettings(timeout=1.0), retry=NO_WAIT))
    for url in (
        f"{base}/ok",
        base.replace("127.0.0.1", "localhost") + "/ok",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
    ):
        job = await contrib_app.enqueue("webhook-delivery", {"url": url, "body": {}})
        done = await finished(contrib_app, job.id)
        assert done.status is JobStatus.FAILED and done.attempts == 1, url
        assert "refused" in (done.error or ""), done.error
    assert seen.requests == []


def test_the_destination_policy() -> None:
    import ipaddress

    default = DestinationPolicy()
    private = DestinationPolicy.create(True, [])
    for address in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.1.1",
        "::1",
        "fc00::1",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
    ):
        assert default.refusal(ipaddress.ip_address(address)) is not None, address
    assert default.refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert private.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert private.refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"


async def test_one_slow_host_gets_at_most_its_share_of_deliveries_at_once(
    contrib_app: App, received: Receiver
) -> None:
    base, seen = received
    contrib_app.use(
        contrib.webhooks(
            WebhookSettings(
                allowed_networks=LOCAL, per_host_concurrency=2, host_wait=0.1, host_busy_delay=0.2
            ),
            retry=NO_WAIT,
            max_attempts=50,
        )
    )
    ids = [
        (
            await contrib_app.enqueue("webhook-delivery", {"url": f"{base}/slow", "body": {"n": n}})
        ).id
        for n in range(6)
    ]
    async with running_worker(contrib_app, WorkerConfig(concurrency=10)):

        async def all_done() -> bool:
            jobs = [await job_of(contrib_app, i) for i in ids]
            return all(j.status is JobStatus.COMPLETED for j in jobs)

        await wait_until(all_done, timeout=60, what="every delivery to finish")
    assert seen.peak["/slow"] <= 2
    assert len(seen.of("/slow")) == 6


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"method": "POST", "body": {}}, "url"),
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "https://user:pw@example.com/x"}, "url"),
        ({"url": "https://example.com/x", "method": "TRACE"}, "method"),
        ({"url": "https://example.com/x", "headers": {"webhook-id": "x"}}, "headers"),
        (
            {"url": "https://example.com/x", "headers": {"X-Tag": "a", "x-tag": "b"}},
            r"headers: .*'X-Tag' and 'x-tag' are given twice \(items 0 and 1\)",
        ),
        ({"url": "https://example.com/x", "extra": 1}, "extra"),
    ],
)
async def test_a_bad_payload_is_refused_at_enqueue_naming_the_field(
    contrib_app: App, payload: dict[str, Any], field: str
) -> None:
    use_webhooks(contrib_app)
    with pytest.raises(InvalidPayload, match=field):
        await contrib_app.enqueue("webhook-delivery", payload)


async def test_a_refused_connection_is_retried(contrib_app: App) -> None:
    use_webhooks(contrib_app)
    job = await contrib_app.enqueue(
        "webhook-delivery", {"url": "http://127.0.0.1:9/hook", "body": {}}
    )  # nothing listens on the discard port
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 3
    assert "cannot reach 127.0.0.1" in (done.error or "")
