"""The dashboard's actions: every state change is a POST carrying the session's CSRF
token, refused with 403 for a read-only session (the guard is in `site.py`)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...app import App
from ...errors import InvalidJobState, JobNotFound, TaskflareError, UnknownQueue
from ...job_client import decode_cursor
from ...messages import check_delay
from .pages import query_from, query_string
from .render import Pages
from .sessions import Session

log = logging.getLogger("taskflare.dashboard")

# A bulk action handles at most this many jobs per request; the page posts the next chunk
# until the filter is exhausted, showing progress.
BULK_CHUNK = 200
MAX_SELECTED = 1000
BULK_ACTIONS = ("retry", "cancel", "delete")


def _ids(form: FormData, limit: int = MAX_SELECTED) -> list[str]:
    ids = [str(v) for v in form.getlist("id") if str(v).strip()]
    if len(ids) > limit:
        raise ValueError(f"id: at most {limit} at once, got {len(ids)}")
    if any("\x00" in i or len(i) > 200 for i in ids):
        raise ValueError("id: not a job or message id")
    return ids


def _field_text(form: FormData, name: str) -> str | None:
    """One text field of a form, stripped (None when absent or empty); `ValueError`
    naming it for a NUL or more than 200 characters."""
    value = str(form.get(name) or "").strip()
    if "\x00" in value or len(value) > 200:
        raise ValueError(f"{name}: not a job or message id")
    return value or None


class Actions:
    """POST handlers bound to one app."""

    def __init__(self, app: App, pages: Pages) -> None:
        self.app = app
        self.pages = pages

    # -- queues --------------------------------------------------------------------------

    async def queue_action(self, request: Request, session: Session, form: FormData) -> Response:
        name = request.path_params["name"]
        action = request.path_params["action"]
        back = f"/queues/{name}"
        try:
            queue = await self.app.stored_queue(name)
        except UnknownQueue:
            return self.pages.error(request, session, 404, f"no queue named {name!r}")
        if action == "pause":
            await queue.pause()
            message = f"Queue {name} paused: workers stop taking its messages"
        elif action == "resume":
            await queue.resume()
            message = f"Queue {name} resumed"
        elif action == "purge":
            if str(form.get("confirm") or "") != name:
                return self.pages.redirect(
                    request, session, back, f"Not purged: type the queue name {name!r} to confirm"
                )
            message = f"Purged {await queue.purge()} messages from {name}"
        elif action == "send":
            message = await self._send(queue, form)
        else:
            return self.pages.error(request, session, 404, f"no queue action {action!r}")
        log.info("dashboard: %s on queue %s", action, name)
        return self.pages.redirect(request, session, back, message)

    async def _send(self, queue: Any, form: FormData) -> str:
        content_type = str(form.get("content_type") or "json").lower()
        text = str(form.get("body") or "")
        delay_text = str(form.get("delay") or "").strip() or "0"
        try:
            delay = float(delay_text)
        except ValueError:
            return f"Not sent: delay: {delay_text[:40]!r} is not a number of seconds"
        try:
            delay = check_delay(delay, "delay")  # errors name the form's field
            body: Any = orjson.loads(text) if content_type == "json" else text
            if content_type == "bytes":
                body = text.encode()
            message_id = await queue.send(body, delay_seconds=delay, content_type=content_type)
        except orjson.JSONDecodeError:
            return "Not sent: body: not valid JSON (choose text to send it as it is)"
        except (TaskflareError, ValueError) as exc:
            return f"Not sent: {exc}"
        return f"Sent test message {message_id}"

    async def dead_letters(self, request: Request, session: Session, form: FormData) -> Response:
        """Replay (one, the selected, or all) dead letters of a queue to it, or delete
        them. A row's own Replay button sends its id as `one` (the selection is then
        ignored)."""
        name = request.path_params["name"]
        action = request.path_params["action"]
        back = f"/queues/{name}/dlq"
        try:
            queue = await self.app.stored_queue(name)
            one = _field_text(form, "one")
            ids = [one] if one else _ids(form)
        except UnknownQueue:
            return self.pages.error(request, session, 404, f"no queue named {name!r}")
        except ValueError as exc:
            return self.pages.error(request, session, 400, str(exc))
        dlq = queue.config.dead_letter_queue
        if not dlq:
            return self.pages.error(
                request, session, 404, await self.app.read.no_dead_letter_queue(name)
            )
        every = form.get("all") == "1"
        if not ids and not every:
            return self.pages.redirect(request, session, back, "Select messages first")
        if action == "replay":
            count = await queue.replay_dead_letters(None if every else ids)
            message = f"Replayed {count} messages to {name}"
        elif action == "delete" and ids:
            message = f"Deleted {await self.app.read.message_delete(dlq, ids)} messages"
        else:
            return self.pages.error(request, session, 400, "action: replay or delete selected")
        return self.pages.redirect(request, session, back, message)

    async def messages(self, request: Request, session: Session, form: FormData) -> Response:
        """Delete selected messages of a queue."""
        name = request.path_params["name"]
        try:
            ids = _ids(form)
        except ValueError as exc:
            return self.pages.error(request, session, 400, str(exc))
        deleted = await self.app.read.message_delete(name, ids) if ids else 0
        return self.pages.redirect(
            request, session, f"/queues/{name}/messages", f"Deleted {deleted} messages"
        )

    # -- jobs ----------------------------------------------------------------------------

    async def job_action(self, request: Request, session: Session, form: FormData) -> Response:
        job_id = request.path_params["job_id"]
        action = request.path_params["action"]
        back = f"/jobs/{job_id}"
        try:
            if action == "retry":
                await self.app.retry(job_id)
                message = "Job retry queued"
            elif action == "cancel":
                job = await self.app.cancel(job_id)
                message = (
                    "Job cancelled" if job.status.value == "cancelled" else "Cancellation requested"
                )
            elif action == "delete":
                await self.app.read.job_delete([job_id])
                return self.pages.redirect(request, session, "/jobs", f"Deleted job {job_id}")
            else:
                return self.pages.error(request, session, 404, f"no job action {action!r}")
        except JobNotFound:
            return self.pages.error(request, session, 404, f"no job with id {job_id!r}")
        except (InvalidJobState, ValueError) as exc:
            message = f"Not done: {exc}"
        return self.pages.redirect(request, session, back, message)

    async def bulk(self, request: Request, session: Session, form: FormData) -> Response:
        """Retry, cancel or delete the selected jobs (a plain form), or one chunk of all the
        jobs matching a filter (`scope=filter`, JSON for the page's progress loop)."""
        action = str(form.get("action") or "")
        wants_json = "application/json" in request.headers.get("accept", "")
        try:
            if action not in BULK_ACTIONS:
                raise ValueError(f"action: one of {', '.join(BULK_ACTIONS)}")
            if form.get("scope") == "filter":
                return await self._bulk_chunk(action, form)
            ids = _ids(form)
        except ValueError as exc:
            if wants_json:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return self.pages.error(request, session, 400, str(exc))
        done, skipped = await self._apply(action, ids)
        filters = query_from({k: form.get(k) for k in ("status", "type", "queue", "text", "key")})
        back = "/jobs?" + urlencode(query_string(filters))
        note = (
            f" ({skipped} skipped: {_past(action)} not possible in their status)" if skipped else ""
        )
        return self.pages.redirect(
            request, session, back, f"{_past(action).title()} {done} jobs{note}"
        )

    async def _bulk_chunk(self, action: str, form: FormData) -> Response:
        query = query_from(
            {k: form.get(k) for k in ("status", "type", "queue", "text", "key", "from", "to")}
        )
        cursor = str(form.get("cursor") or "") or None
        if cursor is not None:
            decode_cursor(cursor)  # ValueError for a forged cursor
        page = await self.app.read.job_search(query, BULK_CHUNK, cursor)
        done, skipped = await self._apply(action, [j.id for j in page.jobs])
        return JSONResponse(
            {
                "done": done,
                "skipped": skipped,
                "examined": len(page.jobs),
                "nextCursor": page.next_cursor,
                "finished": page.next_cursor is None,
            }
        )

    async def _apply(self, action: str, ids: list[str]) -> tuple[int, int]:
        if action == "delete":
            deleted = await self.app.read.job_delete(ids)
            return deleted, len(ids) - deleted
        done = skipped = 0
        change = self.app.retry if action == "retry" else self.app.cancel
        for job_id in ids:
            try:
                await change(job_id)
                done += 1
            except (InvalidJobState, JobNotFound):
                skipped += 1
        return done, skipped

    # -- cron ----------------------------------------------------------------------------

    async def cron_trigger(self, request: Request, session: Session, form: FormData) -> Response:
        name = request.path_params["name"]
        try:
            job_id = await self.app.jobs.fire_cron(name)
        except (TaskflareError, KeyError) as exc:
            return self.pages.error(request, session, 404, str(exc))
        return self.pages.redirect(request, session, "/cron", f"Triggered {name}: job {job_id}")


def _past(action: str) -> str:
    return {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[action]
