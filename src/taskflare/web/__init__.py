"""The HTTP service (FastAPI): the seed's job API, queues, pull consumers, webhooks, metrics."""

from .api import create_api
from .common import Tokens

__all__ = ["Tokens", "create_api"]
