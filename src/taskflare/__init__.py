"""taskflare: background jobs for Python with Cloudflare Queues semantics.

Queues with batched consumers, ack/retry, delays, dead-letter queues and leases that
survive crashes, on one SQLite file by default or PostgreSQL for many workers.
"""

from .app import App
from .errors import (
    AppLoadError,
    BackendUnavailable,
    BatchTooLarge,
    BodyEncodingError,
    DuplicateConsumer,
    EmptyBatch,
    InvalidDatabaseUrl,
    InvalidDelay,
    InvalidMessage,
    InvalidQueueConfig,
    MessageTooLarge,
    SchemaOutdated,
    SchemaTooNew,
    TaskflareError,
    UnknownQueue,
    UnsupportedContentType,
)
from .messages import Message, MessageBatch
from .queue import Queue, QueueConfig
from .stored import StoredMessage
from .worker import Worker, WorkerConfig

__version__ = "0.1.0"

__all__ = [
    "App",
    "AppLoadError",
    "BackendUnavailable",
    "BatchTooLarge",
    "BodyEncodingError",
    "DuplicateConsumer",
    "EmptyBatch",
    "InvalidDatabaseUrl",
    "InvalidDelay",
    "InvalidMessage",
    "InvalidQueueConfig",
    "Message",
    "MessageBatch",
    "MessageTooLarge",
    "Queue",
    "QueueConfig",
    "SchemaOutdated",
    "SchemaTooNew",
    "StoredMessage",
    "TaskflareError",
    "UnknownQueue",
    "UnsupportedContentType",
    "Worker",
    "WorkerConfig",
    "__version__",
]
