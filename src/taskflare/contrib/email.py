"""`send-email`: transactional email over SMTP (aiosmtplib), or to the console or .eml files
in development.

Payload: `to` (one address or a list), `subject`, `body` (text), optional `html`, `cc`,
`bcc`, `reply_to`, `from`, `headers`, `attachments` ([{filename, content (base64),
content_type}]). The Message-ID is fixed when the job is enqueued (it is part of the
stored payload), so every attempt sends the same message and receivers can drop a
duplicate after an unknown outcome; a message known to be sent is never sent again by a
retry. Replies 5xx are permanent, 4xx and connection errors are retried.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import ssl
import sys
import uuid
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ..context import JobContext
from ..retry import Backoff, PermanentError
from .common import (
    ContribSettings,
    JobOptions,
    Payload,
    one_line,
    redact,
    refuse_repeated_headers,
    register,
)

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("taskflare.contrib.email")

SENT_NAMESPACE = "taskflare.email-sent"
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
_RESERVED_HEADERS = {
    "from", "to", "cc", "bcc", "subject", "reply-to", "message-id", "date",
    "content-type", "content-transfer-encoding", "mime-version",
}  # fmt: skip


# `<left@right>` in printable ASCII without spaces or a second `<`/`>` (RFC 5322 msg-id).
# The left part holds no `@` (so it ends at the first one): with `@` in both parts, a
# message_id of many `@`s made `re` try every split, O(n**2) (100 KB: 16 s at enqueue).
_MESSAGE_ID = re.compile(r"<[!-;=?A-~]+@[!-;=?-~]+>")


def _address(value: str, field: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{field}: an address must be text")
    one_line(value, f"{field}: an address")
    _name, addr = parseaddr(value)
    if "@" not in addr or addr.startswith("@") or addr.endswith("@") or " " in addr:
        raise ValueError(f"{field}: {value!r} is not an email address")
    return value


def _addresses(value: str | list[str] | None, field: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    return [_address(v, field) for v in items]


class Attachment(Payload):
    """A small file sent with the email: its name, base64 content and MIME type."""

    filename: str = Field(min_length=1, max_length=255)
    content: str = Field(description="the file's bytes, base64-encoded")
    content_type: str = Field(
        default="application/octet-stream",
        # RFC 6838 type and subtype names: ASCII only (`\w` took any script's letters).
        pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$",
    )

    @field_validator("content")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("content must be base64") from None
        if len(raw) > MAX_ATTACHMENT_BYTES:
            raise ValueError(f"attachment is {len(raw)} bytes; the limit is {MAX_ATTACHMENT_BYTES}")
        return value

    @field_validator("filename")
    @classmethod
    def _one_line(cls, value: str) -> str:
        one_line(value, "filename")
        if any(c in value for c in "/\\"):
            raise ValueError("filename must be a plain file name, without / or \\")
        return value


class SendEmail(Payload):
    """The `send-email` payload (the Queue Service's shape: `{"to", "subject", "body"}`)."""

    to: str | list[str] = Field(description="one address or a list")
    subject: str = Field(max_length=998)
    body: str = Field(description="the plain-text body")
    html: str | None = None
    cc: str | list[str] | None = None
    bcc: str | list[str] | None = None
    reply_to: str | None = None
    sender: str | None = Field(default=None, alias="from")
    headers: dict[str, str] | None = None
    attachments: list[Attachment] | None = Field(default=None, max_length=20)
    message_id: str | None = Field(
        default=None, description="set when the job is enqueued when not given"
    )

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return one_line(value, "subject")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            # RFC 5322 field names: printable US-ASCII but the colon.
            if not name or not all(33 <= ord(c) <= 126 and c != ":" for c in name):
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name!r} is set by its own field, not in headers")
            one_line(text, f"header {name!r}")
        refuse_repeated_headers(value or ())
        return value

    @model_validator(mode="after")
    def _fill(self) -> SendEmail:
        _addresses(self.to, "to")
        _addresses(self.cc, "cc")
        _addresses(self.bcc, "bcc")
        if self.reply_to is not None:
            _address(self.reply_to, "reply_to")
        if self.sender is not None:
            _address(self.sender, "from")
        if not _addresses(self.to, "to"):
            raise ValueError("to: at least one recipient is needed")
        if self.message_id is None:
            # Fixed here, when the job is enqueued: every attempt sends the same Message-ID.
            domain = parseaddr(self.sender or "")[1].rpartition("@")[2] or "taskflare.invalid"
            self.message_id = f"<{uuid.uuid4().hex}@{domain}>"
        elif not _MESSAGE_ID.fullmatch(self.message_id):
            raise ValueError("message_id must look like <unique@domain>")
        return self


class EmailSettings(ContribSettings):
    """How `send-email` sends (each field also from `TASKFLARE_<NAME>`, e.g.
    `TASKFLARE_SMTP_URL`).

    `smtp_url`: `smtp://user:password@host:587` (STARTTLS when the server offers it;
    `?starttls=required` to insist), `smtps://...:465` (TLS from the start) or
    `smtp://host:25?starttls=never`. `email_transport`: `smtp`, `console` (print the
    message; development) or `file` (write `.eml` files into `email_file_dir`).
    `email_from`: the sender when a payload has no `from`. `smtp_ca_file`: extra CA
    certificates to trust.
    """

    email_transport: Literal["smtp", "console", "file"] = "smtp"
    smtp_url: SecretStr | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_ca_file: str | None = None
    email_from: str | None = None
    email_file_dir: str = "outbox"


class _Smtp:
    """The SMTP connection settings parsed from `smtp_url` (password kept secret)."""

    def __init__(self, settings: EmailSettings) -> None:
        if settings.smtp_url is None:
            raise PermanentError("send-email: no SMTP server configured (TASKFLARE_SMTP_URL)")
        url = urlsplit(settings.smtp_url.get_secret_value())
        if url.scheme not in ("smtp", "smtps") or not url.hostname:
            raise PermanentError("send-email: TASKFLARE_SMTP_URL must be smtp:// or smtps://host")
        query = dict(p.split("=", 1) for p in url.query.split("&") if "=" in p)
        self.host = url.hostname
        self.port = url.port or (465 if url.scheme == "smtps" else 587)
        self.use_tls = url.scheme == "smtps"
        starttls = query.get("starttls", "auto")
        self.start_tls: bool | None = {"required": True, "never": False}.get(starttls)
        self.username = unquote(url.username) if url.username else settings.smtp_username
        password = unquote(url.password) if url.password else None
        if password is None and settings.smtp_password is not None:
            password = settings.smtp_password.get_secret_value()
        self.password = password
        self.timeout = settings.smtp_timeout
        self._secrets = (settings.smtp_url.get_secret_value(), password, url.password)
        self.tls_context = ssl.create_default_context(cafile=settings.smtp_ca_file)

    def redact(self, text: str) -> str:
        """`text` without the password (or the URL that holds it)."""
        return redact(text, *self._secrets)


def build_message(payload: SendEmail, default_sender: str | None) -> EmailMessage:
    """The MIME message for a payload (Bcc is not a header: only an envelope recipient)."""
    sender = payload.sender or default_sender
    if not sender:
        raise PermanentError("send-email: no sender: give 'from' or set TASKFLARE_EMAIL_FROM")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(_addresses(payload.to, "to"))
    if payload.cc:
        msg["Cc"] = ", ".join(_addresses(payload.cc, "cc"))
    if payload.reply_to:
        msg["Reply-To"] = payload.reply_to
    msg["Subject"] = payload.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = payload.message_id
    for name, value in (payload.headers or {}).items():
        msg[name] = value
    msg.set_content(payload.body)
    if payload.html is not None:
        msg.add_alternative(payload.html, subtype="html")
    for attachment in payload.attachments or []:
        maintype, _, subtype = attachment.content_type.partition("/")
        msg.add_attachment(
            base64.b64decode(attachment.content),
            maintype=maintype,
            subtype=subtype,
            filename=attachment.filename,
        )
    return msg


def envelope_recipients(payload: SendEmail) -> list[str]:
    """Every address the message is delivered to (To, Cc and Bcc), bare."""
    named = _addresses(payload.to, "to") + _addresses(payload.cc, "cc")
    named += _addresses(payload.bcc, "bcc")
    return [addr for _, addr in getaddresses(named)]


async def _send_smtp(smtp: _Smtp, msg: EmailMessage, recipients: list[str]) -> dict[str, Any]:
    import aiosmtplib

    try:
        refused, reply = await aiosmtplib.send(
            msg,
            recipients=recipients,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=smtp.timeout,
            tls_context=smtp.tls_context,
        )
    except aiosmtplib.SMTPException as exc:
        # What the server answered may quote the credentials it refused.
        raise _smtp_failure(exc, smtp) from None
    except (TimeoutError, OSError) as exc:
        # Connection refused, lost or timed out, TLS failure: retried with backoff.
        raise RuntimeError(
            smtp.redact(f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}")
        ) from None
    replies = {addr: (resp.code, f"{resp.code} {resp.message}") for addr, resp in refused.items()}
    rejected = {a: smtp.redact(text) for a, (code, text) in replies.items() if code >= 500}
    deferred = {a: smtp.redact(text) for a, (code, text) in replies.items() if code < 500}
    return {
        "accepted": [r for r in recipients if r not in replies],
        "rejected": rejected,
        "deferred": deferred,
        "response": smtp.redact(reply),
    }


def _smtp_failure(exc: Exception, smtp: _Smtp) -> Exception:
    """The job outcome of an SMTP error: 5xx permanent, the rest retried; secrets redacted."""
    import aiosmtplib

    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        if all(500 <= c < 600 for c in codes):
            return PermanentError(smtp.redact(f"every recipient was refused: {detail}"))
        return RuntimeError(smtp.redact(f"recipients refused for now: {detail}"))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = smtp.redact(f"SMTP server answered {exc.code} {exc.message}")
        if 500 <= exc.code < 600:
            return PermanentError(text)
        return RuntimeError(text)
    return RuntimeError(smtp.redact(f"SMTP {smtp.host}:{smtp.port}: {type(exc).__name__}: {exc}"))


def _deliver_locally(settings: EmailSettings, msg: EmailMessage, payload: SendEmail) -> str:
    data = msg.as_bytes()
    if settings.email_transport == "console":
        sys.stdout.write(data.decode("utf-8", "replace") + "\n")
        sys.stdout.flush()
        return "console"
    folder = Path(settings.email_file_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = (payload.message_id or uuid.uuid4().hex).strip("<>").replace("@", "_at_")
    target = folder / f"{name}.eml"
    target.write_bytes(data)
    return str(target)


class EmailExtension:
    """`send-email`, installed by `app.use(contrib.email(...))`."""

    def __init__(self, settings: EmailSettings | None, options: JobOptions) -> None:
        self.settings = settings
        self.options = options

    def install(self, app: App) -> None:
        """Register the `send-email` job type on `app`."""
        given = self.settings
        holder: dict[str, EmailSettings] = {}

        def settings() -> EmailSettings:
            if "s" not in holder:  # read the environment when first needed, not at import
                holder["s"] = given or EmailSettings()
            return holder["s"]

        async def send_email(payload: SendEmail, ctx: JobContext) -> dict[str, Any]:
            config = settings()
            sent = app.namespace(SENT_NAMESPACE)
            assert payload.message_id is not None
            earlier = await sent.get(payload.message_id)
            before: dict[str, Any] = earlier.value if earlier is not None else {}
            if earlier is not None and not before.get("deferred"):
                # Sent by an earlier attempt whose outcome was lost: not sent again.
                return {**before, "duplicate": True}
            try:
                msg = build_message(payload, config.email_from)
            except (ValueError, TypeError) as exc:
                # A message that cannot be built now never will be: not retried.
                raise PermanentError(f"send-email: cannot build the message: {exc}") from None
            # A retry after some recipients were deferred (4xx) sends to those only.
            recipients = before.get("deferred") or envelope_recipients(payload)
            if config.email_transport == "smtp":
                outcome = await _send_smtp(_Smtp(config), msg, recipients)
            else:
                where = _deliver_locally(config, msg, payload)
                outcome = {
                    "accepted": recipients,
                    "rejected": {},
                    "deferred": {},
                    "response": where,
                }
            result = {
                "sent": True,
                "messageId": payload.message_id,
                "transport": config.email_transport,
                "accepted": [*before.get("accepted", []), *outcome["accepted"]],
                "rejected": {**before.get("rejected", {}), **outcome["rejected"]},
                "deferred": sorted(outcome["deferred"]),
                "response": outcome["response"],
            }
            await sent.put(payload.message_id, result)
            log.info(
                "sent %s to %d recipient(s) via %s (job %s)",
                payload.message_id,
                len(outcome["accepted"]),
                config.email_transport,
                ctx.job_id,
            )
            if outcome["deferred"]:
                detail = "; ".join(f"{a}: {r}" for a, r in outcome["deferred"].items())
                raise RuntimeError(
                    f"{len(outcome['deferred'])} recipient(s) deferred, retried for them "
                    f"only: {detail}"
                )
            return result

        register(app, self.options, send_email)


def email(
    settings: EmailSettings | None = None,
    *,
    name: str = "send-email",
    queue: str = "email",
    max_attempts: int = 5,
    timeout: float | None = 60.0,
    retry: Backoff | None = None,
) -> EmailExtension:
    """The `send-email` job type: `app.use(contrib.email())` reads `TASKFLARE_SMTP_URL`,
    `TASKFLARE_EMAIL_FROM`, ... when it first sends; or pass `EmailSettings(...)`.

    Retries: 4xx replies and connection errors up to `max_attempts` with `retry`
    (default 30 s doubling to 30 min); 5xx replies fail at once.
    """
    options = JobOptions(
        name=name,
        queue=queue,
        max_attempts=max_attempts,
        timeout=timeout,
        retry=retry or Backoff(base=30, cap=1800),
    )
    return EmailExtension(settings, options)
