"""The exceptions taskflare raises: one root, small and named for what went wrong."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar


class TaskflareError(Exception):
    """Something went wrong in taskflare.

    `fields`: the Python names of the arguments at fault (`("run_at",)`), as the message
    spells them; `message_for` respells them as another caller named them (`runAt` over
    HTTP, `--run-at` on the command line).
    """

    fields: tuple[str, ...] = ()

    def __init__(self, message: str | None = None, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        if fields:
            self.fields = fields

    def message_for(self, names: Mapping[str, str]) -> str:
        """The message with each of `fields` renamed by `names` (others left alone)."""
        text = str(self)
        for field in self.fields:
            if field in names:
                text = re.sub(rf"(?<![\w-]){re.escape(field)}(?![\w-])", names[field], text)
        return text


E = TypeVar("E", bound=BaseException)


def in_item(exc: E, where: str) -> E:
    """`exc`, its message now starting with the item of a list it is about
    (`payloads[3]: job type 'x': payload.price is NaN ...`), for bulk calls."""
    exc.args = (f"{where}: {exc}", *exc.args[1:])
    return exc


class InvalidConfig(TaskflareError, ValueError):
    """A declaration or setting is out of range or of the wrong type."""


class InvalidQueueConfig(InvalidConfig):
    """A queue setting is out of range or of the wrong type."""


# The three below were raised as `InvalidQueueConfig` before 0.2 and still derive from it,
# so existing `except InvalidQueueConfig` code keeps working; catch `InvalidConfig` (or the
# specific class) in new code.


class InvalidJobConfig(InvalidQueueConfig):
    """A job type's options (name, max_attempts, timeout, priority, retry) are invalid."""


class InvalidWorkerConfig(InvalidQueueConfig):
    """A worker setting (concurrency, queues, grace period) is invalid."""


class InvalidWebhookConfig(InvalidQueueConfig):
    """A webhook source's settings (scheme, secret, windows) are invalid."""


class InvalidHook(InvalidConfig):
    """A middleware or lifecycle listener is not callable, or names an unknown event."""


class DuplicateConsumer(TaskflareError, ValueError):
    """A queue already has a consumer; each queue has exactly one."""


class UnknownQueue(TaskflareError, LookupError):
    """No queue of that name is declared in this app."""


class InvalidMessage(TaskflareError, ValueError):
    """A message cannot be sent as given; nothing was enqueued."""


class InvalidJobOption(InvalidMessage, InvalidJobConfig):
    """An option given to one enqueue (priority, max_attempts) is out of range; nothing
    was enqueued. (Also an `InvalidJobConfig`, what these raised before.)"""


class JobRouteRefused(InvalidJobOption):
    """A job was enqueued to a queue other than its type's own, and its type has rate or
    concurrency limits (enforced only on its own queue); nothing was enqueued."""


class InvalidDelay(InvalidMessage):
    """A delay is negative, not a number, or too long."""


class UnsupportedContentType(InvalidMessage):
    """The content type is not one taskflare knows, or is not allowed on this queue."""


class BodyEncodingError(InvalidMessage, TypeError):
    """The body cannot be encoded as its content type."""


class MessageTooLarge(InvalidMessage):
    """A message body is larger than the queue's limit."""


class BatchTooLarge(InvalidMessage):
    """A batch holds too many messages or too many bytes."""


class EmptyBatch(InvalidMessage):
    """send_batch() needs at least one message."""


class InvalidDatabaseUrl(TaskflareError, ValueError):
    """The database URL is not one taskflare can open."""


class SchemaOutdated(TaskflareError):
    """The database schema is older than this version of taskflare."""


class SchemaTooNew(TaskflareError):
    """The database schema is newer than this version of taskflare."""


class BackendUnavailable(TaskflareError):
    """The database cannot be reached or refused the operation."""


class DatabaseNotFound(BackendUnavailable):
    """No taskflare database where the URL points (no SQLite file, no migrated PostgreSQL
    schema), and the caller asked for none to be created (`App(create_database=False)`)."""


class StorageRejected(TaskflareError):
    """The database refused a value (it cannot store it); nothing of that write was stored."""


class AppLoadError(TaskflareError):
    """An app path of the form 'module:attribute' could not be imported."""


class UnknownJobType(TaskflareError, LookupError):
    """No job type of that name is registered in this app."""


class JobQueueSend(InvalidMessage):
    """A plain message was sent to a job queue (one whose workers run job types): it would
    never run; enqueue a job instead. Nothing was stored."""


class AppCodeRequired(InvalidMessage):
    """The job's type has limits (or a uniqueness) stored by the app's workers that this
    producer cannot apply without the app's code; nothing was enqueued."""


class InvalidPayload(TaskflareError, ValueError):
    """A job payload does not match its type's declared model; nothing was enqueued."""


class UniqueKeyMissing(InvalidPayload):
    """A job type is unique by a payload key that the payload does not have (a typo
    would otherwise make different jobs duplicates); nothing was enqueued."""


class InvalidResult(TaskflareError, ValueError):
    """A result to store (a job's, or a `ctx.once` function's) is not JSON or holds a NaN
    or an infinity; nothing was stored."""


class InvalidQuery(TaskflareError, ValueError):
    """A listing was given a bad status, limit or cursor (a cursor must be the
    `next_cursor` of an earlier page of the same listing). Also a `ValueError`, what
    these raised before."""


class InvalidDocument(TaskflareError, ValueError):
    """A document store call was given a bad namespace, key, value, limit or cursor."""


class JobNotFound(TaskflareError, LookupError):
    """No job has that id."""


class InvalidJobState(TaskflareError):
    """The job is not in a state that allows this (e.g. cancelling a completed job)."""


class JobFailed(TaskflareError):
    """The job failed after its last attempt."""

    def __init__(self, message: str | None = None, *, job: object = None) -> None:
        super().__init__(message)
        self.job = job


class JobCancelled(TaskflareError):
    """The job was cancelled."""

    def __init__(self, message: str | None = None, *, job: object = None) -> None:
        super().__init__(message)
        self.job = job
