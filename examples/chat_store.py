"""The chat app's own pieces, shared by the two chat-title examples: its threads table and
a stand-in for the AI call. Nothing here is taskflare."""

from __future__ import annotations

import asyncio
import os
import sqlite3


class ChatStore:
    """The chat app's own threads table (a SQLite file; $CHAT_DB, else chat.db)."""

    def __init__(self, path: str) -> None:
        self.path = path
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS threads "
                "(id INTEGER PRIMARY KEY, first_message TEXT NOT NULL, title TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def create(self, first_message: str) -> int:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT INTO threads (first_message, title) VALUES (?, 'New chat')",
                (first_message,),
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def title(self, thread_id: int) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT title FROM threads WHERE id = ?", (thread_id,)).fetchone()
        return None if row is None else str(row[0])

    def set_title(self, thread_id: int, title: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE threads SET title = ? WHERE id = ?", (title, thread_id))


async def generate_title_from_message(message: str) -> str:
    """Stand-in for the AI call (a real one takes 1-5 s): the first words, capitalised."""
    await asyncio.sleep(float(os.environ.get("TITLE_DELAY", "1.0")))
    if not message.strip():
        raise ValueError("cannot title an empty message")
    return " ".join(message.split()[:5]).rstrip("?!.").capitalize()
