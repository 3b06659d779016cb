"""send-email against a real local SMTP server (aiosmtpd): the message that arrives, its
headers and attachments, STARTTLS with login, permanent and temporary refusals, retries."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from helpers import running_worker, wait_until
from job_helpers import drain_until, job_of
from taskflare import App, Backoff, InvalidPayload, JobStatus, contrib
from taskflare.contrib import EmailSettings

from .conftest import local_services

EMAIL = {"to": "user@example.com", "subject": "Welcome!", "body": "Welcome to our service..."}
NO_WAIT = Backoff(base=0, cap=0, jitter=False)


def use_email(app: App, smtp_url: str, **settings: Any) -> None:
    app.use(
        contrib.email(
            EmailSettings(smtp_url=smtp_url, email_from="Shop <shop@example.com>", **settings),
            retry=NO_WAIT,
            max_attempts=3,
        )
    )


async def finished(app: App, job_id: str) -> Any:
    async def done() -> Any:
        job = await job_of(app, job_id)
        return job if job.status.finished else None

    return await drain_until(app, done, what=f"job {job_id} to finish")


async def test_the_seed_payload_arrives_with_its_headers_and_attachments(
    contrib_app: App, smtp: tuple[str, local_services.SmtpInbox]
) -> None:
    url, inbox = smtp
    use_email(contrib_app, url)
    job = await contrib_app.enqueue(
        "send-email",
        {
            **EMAIL,
            "to": ["Ann <ann@example.com>", "bob@example.com"],
            "cc": "carol@example.com",
            "bcc": ["dave@example.com"],
            "reply_to": "help@example.com",
            "html": "<p>Welcome!</p>",
            "headers": {"X-Campaign": "welcome-42"},
            "attachments": [
                {
                    "filename": "hello.txt",
                    "content": base64.b64encode(b"hello file").decode(),
                    "content_type": "text/plain",
                }
            ],
        },
    )
    message_id = job.payload["message_id"]
    assert message_id.startswith("<") and message_id.endswith(">")
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.result["sent"] is True and done.result["messageId"] == message_id
    assert sorted(done.result["accepted"]) == [
        "ann@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ]
    [message] = inbox.messages
    assert message["Message-ID"] == message_id
    assert message["Subject"] == "Welcome!" and message["X-Campaign"] == "welcome-42"
    assert (
        message["From"] == "Shop <shop@example.com>" and message["Reply-To"] == "help@example.com"
    )
    assert "ann@example.com" in message["To"] and message["Cc"] == "carol@example.com"
    assert message["Bcc"] is None  # an envelope recipient only
    assert inbox.envelopes[0][1] == [
        "ann@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
    ]
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and text.get_content().strip() == "Welcome to our service..."
    assert html is not None and "<p>Welcome!</p>" in html.get_content()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "hello.txt"
    assert attachment.get_content_type() == "text/plain"
    assert attachment.get_payload(decode=True) == b"hello file"


async def test_starttls_and_login_and_the_password_is_never_shown(
    contrib_app: App, tls_cert: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with local_services.smtp_server(tls_cert=tls_cert, require_auth=True) as (url, inbox):
        secret_url = url.replace("smtp://", "smtp://mailer:s3cret-pass@")
        use_email(contrib_app, secret_url, smtp_ca_file=tls_cert[0])
        job = await contrib_app.enqueue("send-email", EMAIL)
        done = await finished(contrib_app, job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        assert inbox.logins == ["mailer"] and len(inbox.messages) == 1
    settings = EmailSettings(smtp_url=secret_url)
    shown = " ".join([repr(settings), str(settings), caplog.text, str(done.to_dict())])
    assert "s3cret-pass" not in shown


async def test_a_wrong_password_is_permanent(contrib_app: App, tls_cert: tuple[str, str]) -> None:
    with local_services.smtp_server(tls_cert=tls_cert, require_auth=True) as (url, inbox):
        bad = url.replace("smtp://", "smtp://mailer:wrong-pass@")
        use_email(contrib_app, bad, smtp_ca_file=tls_cert[0])
        job = await contrib_app.enqueue("send-email", EMAIL)
        done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "535" in (done.error or "") and "wrong-pass" not in (done.error or "")
    assert inbox.messages == []


async def test_a_recipient_refused_with_5xx_fails_at_once(
    contrib_app: App, smtp: tuple[str, local_services.SmtpInbox]
) -> None:
    url, inbox = smtp
    use_email(contrib_app, url)
    job = await contrib_app.enqueue("send-email", {**EMAIL, "to": "bounce@example.com"})
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.FAILED and done.attempts == 1
    assert "550" in (done.error or "")
    assert inbox.messages == []


async def test_one_refused_recipient_among_accepted_ones_is_reported(
    contrib_app: App, smtp: tuple[str, local_services.SmtpInbox]
) -> None:
    url, inbox = smtp
    use_email(contrib_app, url)
    job = await contrib_app.enqueue(
        "send-email", {**EMAIL, "to": ["ok@example.com", "bounce@example.com"]}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result["accepted"] == ["ok@example.com"]
    assert done.result["rejected"]["bounce@example.com"].startswith("550")
    assert len(inbox.messages) == 1


async def test_4xx_and_connection_errors_are_retried(
    contrib_app: App, smtp: tuple[str, local_services.SmtpInbox]
) -> None:
    url, _ = smtp
    use_email(contrib_app, url)
    later = await contrib_app.enqueue("send-email", {**EMAIL, "to": "later@example.com"})
    done = await finished(contrib_app, later.id)
    assert done.status is JobStatus.FAILED and done.attempts == 3
    assert "451" in (done.error or "")

    closed = App(contrib_app.database_url)
    try:
        use_email(closed, "smtp://127.0.0.1:9")  # nothing listens on the discard port
        refused = await closed.enqueue("send-email", EMAIL)
        done = await finished(closed, refused.id)
        assert done.status is JobStatus.FAILED and done.attempts == 3
        assert "SMTP 127.0.0.1:9" in (done.error or "")
    finally:
        await closed.close()


async def test_the_message_id_is_fixed_at_enqueue_and_a_retry_after_sending_does_not_resend(
    contrib_app: App, smtp: tuple[str, local_services.SmtpInbox]
) -> None:
    url, inbox = smtp
    use_email(contrib_app, url)
    job = await contrib_app.enqueue("send-email", EMAIL)
    stored = await job_of(contrib_app, job.id)
    assert stored.payload["message_id"] == job.payload["message_id"]
    await finished(contrib_app, job.id)
    # The outcome was lost (say the worker died after sending): the job runs again.
    first = await job_of(contrib_app, job.id)
    again = await contrib_app.enqueue("send-email", stored.payload)
    done = await finished(contrib_app, again.id)
    assert (
        done.result["duplicate"] is True and done.result["messageId"] == first.result["messageId"]
    )
    assert len(inbox.messages) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"subject": "s", "body": "b"}, "to"),
        ({**EMAIL, "to": "not-an-address"}, "to"),
        ({**EMAIL, "subject": "two\nlines"}, "subject"),
        ({**EMAIL, "headers": {"Bcc": "x@example.com"}}, "headers"),
        (
            {**EMAIL, "headers": {"X-Campaign": "a", "x-campaign": "b"}},
            r"headers: .*'X-Campaign' and 'x-campaign' are given twice",
        ),
        ({**EMAIL, "attachments": [{"filename": "a", "content": "%%%"}]}, "attachments.0.content"),
        ({**EMAIL, "priority": "high"}, "priority"),
    ],
)
async def test_a_bad_payload_is_refused_at_enqueue_naming_the_field(
    contrib_app: App, payload: dict[str, Any], field: str
) -> None:
    contrib_app.use(contrib.email(EmailSettings(email_transport="console")))
    with pytest.raises(InvalidPayload, match=field):
        await contrib_app.enqueue("send-email", payload)


async def test_the_file_transport_writes_eml_files(contrib_app: App, tmp_path: Any) -> None:
    outbox = tmp_path / "outbox"
    contrib_app.use(
        contrib.email(
            EmailSettings(email_transport="file", email_file_dir=str(outbox), email_from="a@b.c")
        )
    )
    job = await contrib_app.enqueue("send-email", EMAIL)
    async with running_worker(contrib_app):
        await wait_until(lambda: list(outbox.glob("*.eml")), timeout=10, what="an .eml file")
    [eml] = list(outbox.glob("*.eml"))
    assert b"Subject: Welcome!" in eml.read_bytes()
    assert job.id


async def test_implicit_tls_smtps(contrib_app: App, tls_cert: tuple[str, str]) -> None:
    with local_services.smtp_server(tls_cert=tls_cert, implicit_tls=True) as (url, inbox):
        assert url.startswith("smtps://")
        use_email(contrib_app, url, smtp_ca_file=tls_cert[0])
        job = await contrib_app.enqueue("send-email", EMAIL)
        done = await finished(contrib_app, job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        assert len(inbox.messages) == 1


async def test_the_console_transport_prints_the_message(
    contrib_app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    contrib_app.use(contrib.email(EmailSettings(email_transport="console", email_from="a@b.c")))
    job = await contrib_app.enqueue("send-email", EMAIL)
    done = await finished(contrib_app, job.id)
    assert done.result["transport"] == "console"
    printed = capsys.readouterr().out
    assert "Subject: Welcome!" in printed and done.result["messageId"] in printed


async def test_a_deferred_recipient_is_retried_alone(
    contrib_app: App, smtp: tuple[str, local_services.SmtpInbox]
) -> None:
    url, inbox = smtp
    use_email(contrib_app, url)
    job = await contrib_app.enqueue(
        "send-email", {**EMAIL, "to": ["ok@example.com", "flaky@example.com"]}
    )
    done = await finished(contrib_app, job.id)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert "flaky@example.com: 451" in (done.history[0].error or "")
    assert done.result["accepted"] == ["ok@example.com", "flaky@example.com"]
    assert done.result["deferred"] == []
    assert [rcpts for _, rcpts in inbox.envelopes] == [["ok@example.com"], ["flaky@example.com"]]
    assert len({m["Message-ID"] for m in inbox.messages}) == 1  # one message, twice delivered
