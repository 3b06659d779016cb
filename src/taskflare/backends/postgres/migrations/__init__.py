"""Numbered schema migrations of the PostgreSQL backend (mirrors the SQLite ones)."""
