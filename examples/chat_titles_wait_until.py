"""A chat app names each new thread after its first message, with `wait_until`: best
effort, no worker needed.

Creating a thread answers at once with the placeholder title "New chat"; the AI title is
generated after the response has been sent, in the web server's own process. If the AI
call fails, the error is logged with its traceback and the thread keeps "New chat"; if
the server dies first, the title is never generated. That is fine for a title. For work
that must happen, see `chat_titles_queue.py` (the same app with a job: one argument).

Run it:

    uvicorn --app-dir examples chat_titles_wait_until:api
    curl -X POST localhost:8000/threads -H 'content-type: application/json' \
         -d '{"first_message": "how do I reverse a list in python?"}'
    curl localhost:8000/threads/1
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Annotated

from chat_store import ChatStore, generate_title_from_message
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from taskflare import App
from taskflare.asgi import RequestTasks, WaitUntilMiddleware, request_wait_until

log = logging.getLogger("chat")

app = App(wait_until_limit=30)  # $TASKFLARE_DATABASE_URL, else sqlite:///taskflare.db
api = FastAPI()
api.add_middleware(WaitUntilMiddleware, taskflare_app=app)
WaitUntil = Annotated[RequestTasks, Depends(request_wait_until)]


store = ChatStore(os.environ.get("CHAT_DB", "chat.db"))


async def generate_and_store_title(thread_id: int, first_message: str) -> None:
    """The best-effort work. No try/except: `wait_until` logs a failure with its traceback."""
    title = await generate_title_from_message(first_message)
    await asyncio.to_thread(store.set_title, thread_id, title)
    log.info("title generated for thread %d: %r", thread_id, title)


class NewThread(BaseModel):
    first_message: str


@api.post("/threads")
async def create_thread(body: NewThread, wait_until: WaitUntil) -> dict[str, object]:
    thread_id = await asyncio.to_thread(store.create, body.first_message)
    wait_until(generate_and_store_title(thread_id, body.first_message))  # starts after the reply
    return {"id": thread_id, "title": "New chat"}


@api.get("/threads/{thread_id}")
async def get_thread(thread_id: int) -> dict[str, object]:
    title = await asyncio.to_thread(store.title, thread_id)
    if title is None:
        raise HTTPException(404, f"no thread {thread_id}")
    return {"id": thread_id, "title": title}
