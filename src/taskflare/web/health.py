"""`GET /health` (readiness: the database answers) and `GET /health/live` (the process
answers; never touches the database). Both are public: they say nothing but a state."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..app import App
from .security import redact_secrets

log = logging.getLogger("taskflare.http")

# How long `GET /health` waits for the database before answering 503 (a load balancer's
# probe usually times out after 5 s or more).
DATABASE_TIMEOUT = 2.0


class HealthBody(BaseModel):
    """`status` is `ok` or `unavailable`; `database` the same for the database alone."""

    status: str
    service: str = "queue"
    timestamp: str
    database: str | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def health_router(app: App) -> APIRouter:
    """The two health endpoints of `app`'s service."""
    router = APIRouter(tags=["service"])
    last_problem: list[str | None] = [None]  # logged when the state changes, not per probe

    @router.get("/health/live", response_model=HealthBody)
    async def live() -> dict[str, Any]:
        return {"status": "ok", "service": "queue", "timestamp": _now()}

    @router.get(
        "/health",
        response_model=HealthBody,
        responses={503: {"model": HealthBody, "description": "the database is unavailable"}},
    )
    async def health() -> JSONResponse:
        problem = await app.read.database_problem(DATABASE_TIMEOUT)
        if problem != last_problem[0]:
            if problem is None:
                log.info("health: the database answers again")
            else:
                text = redact_secrets(problem, app.database_url)
                log.warning("health: the database is unavailable: %s", text)
            last_problem[0] = problem
        state = "ok" if problem is None else "unavailable"
        body = {"status": state, "service": "queue", "timestamp": _now(), "database": state}
        headers = {} if problem is None else {"retry-after": "5"}
        return JSONResponse(body, status_code=200 if problem is None else 503, headers=headers)

    return router
