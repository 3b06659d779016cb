"""The dashboard's pages (GET only: nothing changes on a GET)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ...app import App
from ...errors import UnknownQueue
from ...jobs import JobStatus
from ...readmodel import (
    BATCH_COUNT_LIMIT,
    BULK_COUNT_LIMIT,
    FILTER_SCAN_LIMIT,
    TEXT_SCAN_LIMIT,
    JobQuery,
)
from .charts import line_chart
from .render import PREVIEW_CHARS, Pages, pretty_json
from .sessions import Session

PAGE_SIZE = 50
MESSAGE_PAGE_SIZE = 50
WINDOWS = {"1h": (3600.0, 60), "24h": (86_400.0, 900)}


def parse_time(value: str | None, field: str) -> float | None:
    """A `datetime-local` field (UTC) or ISO 8601 text as epoch seconds; `ValueError`
    naming the field."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def job_query(request: Request) -> JobQuery:
    """The jobs filter from a query string (or a submitted form's fields)."""
    return query_from(dict(request.query_params))


def query_from(fields: dict[str, Any]) -> JobQuery:
    """The jobs filter from form or query fields; `ValueError` naming a bad field."""

    def text(name: str) -> str | None:
        value = str(fields.get(name) or "").strip()
        if "\x00" in value:
            raise ValueError(f"{name}: must not contain a NUL character")
        if len(value) > 500:
            raise ValueError(f"{name}: at most 500 characters")
        return value or None

    status = text("status")
    if status is not None and status not in {s.value for s in JobStatus}:
        raise ValueError(
            f"status: {status!r} is not one of {', '.join(s.value for s in JobStatus)}"
        )
    return JobQuery(
        status=status,
        type=text("type"),
        queue=text("queue"),
        created_from=parse_time(text("from"), "from"),
        created_to=parse_time(text("to"), "to"),
        text=text("text"),
        key=text("key"),
    )


def query_string(query: JobQuery) -> dict[str, str]:
    """The filter as query-string fields (for links that keep it)."""
    fields = {
        "status": query.status,
        "type": query.type,
        "queue": query.queue,
        "text": query.text,
        "key": query.key,
        "from": _local(query.created_from),
        "to": _local(query.created_to),
    }
    return {k: v for k, v in fields.items() if v}


def _local(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M")


def history_charts(history: dict[str, Any], queues: list[str] | None = None) -> list[Any]:
    """Processed and failed per minute, and p50/p95 duration, as SVG charts."""
    start, step = history["start"], history["step"]
    series = history["queues"]
    names = [q for q in (queues if queues is not None else sorted(series)) if q in series]
    processed = [(f"{q} processed", [p["processed"] for p in series[q]]) for q in names]
    failed = [(f"{q} failed", [p["failed"] for p in series[q]]) for q in names]
    latency = []
    for q in names:
        latency.append((f"{q} p50", [p["p50"] for p in series[q]]))
        latency.append((f"{q} p95", [p["p95"] for p in series[q]]))
    return [
        line_chart("Processed per minute", processed, start=start, step=step),
        line_chart("Failed per minute", failed, start=start, step=step),
        line_chart("Processing time (p50, p95)", latency, start=start, step=step, unit="s"),
    ]


class Views:
    """GET handlers bound to one app."""

    def __init__(self, app: App, pages: Pages) -> None:
        self.app = app
        self.pages = pages

    async def overview(self, request: Request, session: Session) -> Response:
        window = request.query_params.get("window", "1h")
        seconds, step = WINDOWS.get(window, WINDOWS["1h"])
        read = self.app.read
        # A fixed number of queries, whatever the number of queues or jobs: depths (two),
        # worker reports (one), history (one).
        queues = await read.queue_depths()
        counters = await read.worker_counters()
        history = await read.history(seconds, step)
        last = int(time.time() // 60 * 60) - 60  # the last complete minute
        for q in queues:
            points = history["queues"].get(q["name"], [])
            index = (last - history["start"]) // history["step"]
            minute = points[index] if 0 <= index < len(points) else None
            q["processedPerMinute"] = round(
                counters.rates.get("acked", {}).get(q["name"], 0.0) * 60, 1
            )
            q["failedPerMinute"] = round(
                counters.rates.get("failed", {}).get(q["name"], 0.0) * 60, 1
            )
            q["p50"] = minute["p50"] if minute else None
            q["p95"] = minute["p95"] if minute else None
        totals = {
            key: round(sum(q[key] or 0 for q in queues), 1)
            for key in (
                "ready",
                "delayed",
                "leased",
                "failed",
                "processedPerMinute",
                "failedPerMinute",
            )
        }
        dead_letter_queues = [
            q for q in queues if any(other["deadLetterQueue"] == q["name"] for other in queues)
        ]
        totals["deadLetters"] = sum(q["ready"] + q["delayed"] for q in dead_letter_queues)
        capped = {key for q in queues for key in q["capped"]}
        if any("ready" in q["capped"] for q in dead_letter_queues):
            capped.add("deadLetters")
        return self.pages.render(
            request,
            session,
            "overview.html",
            queues=queues,
            totals=totals,
            capped=capped,
            workers=counters.alive,
            charts=history_charts(history),
            window=window if window in WINDOWS else "1h",
            live=True,
        )

    async def queue(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        found = await self.app.read.queue_depths(name)
        if not found:
            return self.pages.error(request, session, 404, f"no queue named {name!r}")
        queue = found[0]
        if queue["deadLetterQueue"]:
            dead = await self.app.read.queue_depths(queue["deadLetterQueue"])
            queue["deadLetterDepth"] = dead[0]["ready"] + dead[0]["delayed"] if dead else 0
            queue["deadLetterCapped"] = bool(dead) and "ready" in dead[0]["capped"]
        history = await self.app.read.history(3600.0, 60)
        settings = queue["settings"] or {}
        dead_letters_of = await self.app.read.queues_dead_lettering_into(name)
        return self.pages.render(
            request,
            session,
            "queue.html",
            queue=queue,
            settings=settings,
            dlq=queue["deadLetterQueue"],
            dead_letters_of=dead_letters_of,
            consumer=queue["consumer"],
            charts=history_charts(history, [name]),
            live=True,
        )

    async def messages(self, request: Request, session: Session) -> Response:
        """A queue's messages; `dlq=1` shows the dead letters of the queue instead."""
        name = request.path_params["name"]
        state = request.query_params.get("state") or None
        cursor = request.query_params.get("cursor") or None
        dead = request.url.path.endswith("/dlq")
        try:
            if name in self.app.queues:  # declared: its settings need no query
                settings = orjson.loads(self.app.queues[name].config.to_json())
            else:
                found = await self.app.read.queue_depths(name)
                if not found:
                    raise UnknownQueue(f"no queue named {name!r}")
                settings = found[0]["settings"] or {}
            shown = name
            if dead:
                dlq = settings.get("dead_letter_queue")
                if not dlq:
                    return self.pages.error(
                        request, session, 404, await self.app.read.no_dead_letter_queue(name)
                    )
                shown, state = dlq, "ready"
            page = await self.app.read.message_page(shown, state, MESSAGE_PAGE_SIZE, cursor)
        except UnknownQueue:
            return self.pages.error(request, session, 404, f"no queue named {name!r}")
        except ValueError as exc:
            return self.pages.error(request, session, 400, f"cursor: {exc}")
        for message in page.messages:
            message["bodyText"] = _body_text(message)
        return self.pages.render(
            request,
            session,
            "messages.html",
            queue=name,
            shown=shown,
            dead=dead,
            state=state,
            messages=page.messages,
            next_cursor=page.next_cursor,
        )

    async def jobs(self, request: Request, session: Session) -> Response:
        try:
            query = job_query(request)
            cursor = request.query_params.get("cursor") or None
            page = await self.app.read.job_search(query, PAGE_SIZE, cursor)
        except ValueError as exc:
            return self.pages.render(
                request,
                session,
                "jobs.html",
                400,
                error=str(exc),
                jobs=[],
                filters=dict(request.query_params),
                **self._job_choices(),
            )
        return self.pages.render(
            request,
            session,
            "jobs.html",
            jobs=page.jobs,
            next_cursor=page.next_cursor,
            partial=page.partial,
            window=_thousands(TEXT_SCAN_LIMIT if query.text else FILTER_SCAN_LIMIT),
            cursor=cursor,
            filters=query_string(query),
            **self._job_choices(),
        )

    def _job_choices(self) -> dict[str, Any]:
        return {
            "statuses": [s.value for s in JobStatus],
            "types": sorted(self.app.job_types),
            "queue_names": sorted(self.app.queues),
        }

    async def jobs_count(self, request: Request, session: Session) -> Response:
        from starlette.responses import JSONResponse

        try:
            query = job_query(request)
            count = await self.app.read.job_search_count(query, BULK_COUNT_LIMIT)
            complete = await self.app.read.job_search_count_complete(query, BULK_COUNT_LIMIT)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        at_least = count > BULK_COUNT_LIMIT or not complete
        if count > BULK_COUNT_LIMIT:
            shown = f"{_thousands(BULK_COUNT_LIMIT)}+"
        elif not complete:  # a payload text, counted in the newest jobs only
            shown = f"at least {count}"
        else:
            shown = str(count)
        return JSONResponse(
            {"count": count, "shown": shown, "atLeast": at_least},
            headers={"cache-control": "no-store"},
        )

    async def job(self, request: Request, session: Session) -> Response:
        job_id = request.path_params["job_id"]
        job = await self.app.read.job(job_id)
        if job is None:
            return self.pages.error(request, session, 404, f"no job with id {job_id!r}")
        full = request.query_params.get("full") == "1"
        payload, result = pretty_json(job.payload), pretty_json(job.result)
        reasons = await self.app.read.pending_reasons(job)
        batch = await self.app.read.job_batch(job.batch_id) if job.batch_id else None
        return self.pages.render(
            request,
            session,
            "job.html",
            job=job,
            payload=payload if full else payload[:PREVIEW_CHARS],
            result=result if full else result[:PREVIEW_CHARS],
            truncated=not full and max(len(payload), len(result)) > PREVIEW_CHARS,
            reasons=reasons,
            batch=batch,
            timeline=_timeline(job),
            live=not job.status.finished,
        )

    async def cron(self, request: Request, session: Session) -> Response:
        return self.pages.render(
            request, session, "cron.html", triggers=await self.app.read.cron_detail()
        )

    async def workers(self, request: Request, session: Session) -> Response:
        return self.pages.render(
            request, session, "workers.html", workers=await self.app.read.workers(), live=True
        )

    async def batches(self, request: Request, session: Session) -> Response:
        return self.pages.render(
            request,
            session,
            "batches.html",
            batches=await self.app.read.batches(),
            count_limit=BATCH_COUNT_LIMIT,
            live=True,
        )


def _thousands(number: int) -> str:
    return f"{number:,}".replace(",", " ")


def _body_text(message: dict[str, Any]) -> str:
    body = message["body"]
    return body if isinstance(body, str) and message["contentType"] != "json" else pretty_json(body)


def _timeline(job: Any) -> list[tuple[str, Any]]:
    steps: list[tuple[str, Any]] = [("enqueued", job.created_at)]
    if job.run_at and job.run_at > job.created_at:
        steps.append(("scheduled for", job.run_at))
    for attempt in job.history:
        steps.append((f"attempt {attempt.attempt} started", attempt.started_at))
        if attempt.finished_at:
            steps.append((f"attempt {attempt.attempt} {attempt.outcome}", attempt.finished_at))
    if job.completed_at:
        steps.append((job.status.value, job.completed_at))
    return steps
