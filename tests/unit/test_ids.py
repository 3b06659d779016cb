"""`uuid7`: time-ordered, unique, valid version-7 UUIDs."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from typing import Any

from taskflare.ids import uuid7, uuid7_many


def test_is_a_version_7_rfc_4122_uuid() -> None:
    value = uuid.UUID(uuid7())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_embeds_the_current_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid.UUID(uuid7())
    after = time.time_ns() // 1_000_000
    assert before <= value.int >> 80 <= after + 1


def test_successive_ids_are_strictly_increasing() -> None:
    ids = [uuid7() for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_from_many_threads_are_unique() -> None:
    out: list[list[str]] = [[] for _ in range(8)]

    def make(bucket: list[str]) -> None:
        bucket.extend(uuid7() for _ in range(2_000))

    threads = [threading.Thread(target=make, args=(bucket,)) for bucket in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for bucket in out for i in bucket]
    assert len(set(every)) == len(every)
    for bucket in out:
        assert bucket == sorted(bucket)


def test_string_form_sorts_like_the_integer() -> None:
    ids = [uuid7() for _ in range(1_000)]
    assert sorted(ids) == sorted(ids, key=lambda s: uuid.UUID(s).int)


def test_the_text_is_the_canonical_uuid_form() -> None:
    for _ in range(100):
        text = uuid7()
        assert str(uuid.UUID(text)) == text


def _random_part(text: str) -> int:
    return uuid.UUID(text).int & ((1 << 62) - 1)


def test_an_applications_random_seed_does_not_touch_the_ids() -> None:
    import random

    random.seed(42)
    first = _random_part(uuid7())
    random.seed(42)
    assert _random_part(uuid7()) != first


def _send_ids(conn: Any) -> None:
    conn.send([uuid7() for _ in range(50)])
    conn.close()


def test_a_forked_child_draws_other_random_bits_than_its_parent() -> None:
    ctx = multiprocessing.get_context("fork")
    uuid7()  # the parent's generator is in use before the fork
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_send_ids, args=(child,))
    proc.start()
    mine = {_random_part(uuid7()) for _ in range(50)}
    theirs = {_random_part(text) for text in parent.recv()}
    proc.join(timeout=30)
    assert not mine & theirs


def test_many_ids_at_once_are_valid_increasing_and_follow_the_single_ones() -> None:
    """`uuid7_many` gives what as many `uuid7` calls would: valid, strictly increasing
    across the 4 096 a millisecond's counter holds, ordered with the ids around them."""
    before = uuid7()
    many = uuid7_many(10_000)
    after = uuid7()
    every = [before, *many, after]
    assert every == sorted(every) and len(set(every)) == len(every)
    for text in many[:5] + many[4090:4100] + many[-5:]:
        value = uuid.UUID(text)
        assert (value.version, value.variant, str(value)) == (7, uuid.RFC_4122, text)
    assert uuid7_many(0) == []
