"""taskflare: background jobs for Python with Cloudflare Queues semantics.

Queues with batched consumers, ack/retry, delays, dead-letter queues and leases that
survive crashes, on one SQLite file by default or PostgreSQL for many workers.
"""

from .app import App
from .context import JobContext
from .cron import CronSchedule, InvalidCronExpression
from .documents import Document, DocumentPage, Namespace
from .errors import (
    AppCodeRequired,
    AppLoadError,
    BackendUnavailable,
    BatchTooLarge,
    BodyEncodingError,
    DatabaseNotFound,
    DuplicateConsumer,
    EmptyBatch,
    InvalidConfig,
    InvalidDatabaseUrl,
    InvalidDelay,
    InvalidDocument,
    InvalidHook,
    InvalidJobConfig,
    InvalidJobOption,
    InvalidJobState,
    InvalidMessage,
    InvalidPayload,
    InvalidQuery,
    InvalidQueueConfig,
    InvalidResult,
    InvalidWebhookConfig,
    InvalidWorkerConfig,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobQueueSend,
    JobRouteRefused,
    MessageTooLarge,
    SchemaOutdated,
    SchemaTooNew,
    StorageRejected,
    TaskflareError,
    UniqueKeyMissing,
    UnknownJobType,
    UnknownQueue,
    UnsupportedContentType,
)
from .flow import RateLimited, Snooze
from .jobs import Job, JobAttempt, JobBatch, JobPage, JobStatus, JobType
from .limits import Concurrency, RateLimit, Unique
from .messages import Message, MessageBatch
from .queue import Queue
from .registry import QueueConfig, ScheduledEvent
from .registry.hooks import CallNext, HandlerCall, LifecycleEvent
from .retention import Retention
from .retry import Backoff, PermanentError, Retry
from .stored import StoredMessage
from .worker import Worker, WorkerConfig

__version__ = "0.1.0"

__all__ = [
    "App",
    "AppCodeRequired",
    "AppLoadError",
    "BackendUnavailable",
    "Backoff",
    "BatchTooLarge",
    "BodyEncodingError",
    "CallNext",
    "Concurrency",
    "CronSchedule",
    "DatabaseNotFound",
    "Document",
    "DocumentPage",
    "DuplicateConsumer",
    "EmptyBatch",
    "HandlerCall",
    "InvalidConfig",
    "InvalidCronExpression",
    "InvalidDatabaseUrl",
    "InvalidDelay",
    "InvalidDocument",
    "InvalidHook",
    "InvalidJobConfig",
    "InvalidJobOption",
    "InvalidJobState",
    "InvalidMessage",
    "InvalidPayload",
    "InvalidQuery",
    "InvalidQueueConfig",
    "InvalidResult",
    "InvalidWebhookConfig",
    "InvalidWorkerConfig",
    "Job",
    "JobAttempt",
    "JobBatch",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "JobPage",
    "JobQueueSend",
    "JobRouteRefused",
    "JobStatus",
    "JobType",
    "LifecycleEvent",
    "Message",
    "MessageBatch",
    "MessageTooLarge",
    "Namespace",
    "PermanentError",
    "Queue",
    "QueueConfig",
    "RateLimit",
    "RateLimited",
    "Retention",
    "Retry",
    "ScheduledEvent",
    "SchemaOutdated",
    "SchemaTooNew",
    "Snooze",
    "StorageRejected",
    "StoredMessage",
    "TaskflareError",
    "Unique",
    "UniqueKeyMissing",
    "UnknownJobType",
    "UnknownQueue",
    "UnsupportedContentType",
    "Worker",
    "WorkerConfig",
    "__version__",
]
