"""OnceStore: `ctx.once` runs a function once per key across every worker."""

from __future__ import annotations

from helpers import wait_until
from taskflare.backends import Backend
from taskflare.backends.base import (
    OnceAbandonParams,
    OnceClaim,
    OnceClaimParams,
    OnceFinishParams,
    OnceState,
)

CLAIMED, BUSY = OnceClaim(OnceState.CLAIMED), OnceClaim(OnceState.BUSY)


async def claim(backend: Backend, owner: str, lease: float = 60.0, key: str = "k") -> OnceClaim:
    return await backend.once_claim(OnceClaimParams(key, owner, lease))


async def test_the_first_caller_claims_a_key_and_the_others_find_it_busy(
    backend: Backend,
) -> None:
    assert await claim(backend, "a") == CLAIMED
    assert await claim(backend, "b") == BUSY
    assert await claim(backend, "a") == BUSY  # the holder too: it runs once
    assert await claim(backend, "b", key="other") == CLAIMED


async def test_a_finished_key_gives_every_caller_the_stored_result(backend: Backend) -> None:
    await claim(backend, "a")
    await backend.once_finish(OnceFinishParams("k", "a", b'{"sent": true}', ttl=60))
    done = OnceClaim(OnceState.DONE, b'{"sent": true}')
    assert await claim(backend, "b") == done
    assert await claim(backend, "a") == done


async def test_only_the_holder_can_finish_or_abandon_a_key(backend: Backend) -> None:
    await claim(backend, "a")
    await backend.once_finish(OnceFinishParams("k", "b", b"1", ttl=60))
    await backend.once_abandon(OnceAbandonParams("k", "b"))
    assert await claim(backend, "c") == BUSY


async def test_an_abandoned_claim_can_be_taken_again(backend: Backend) -> None:
    await claim(backend, "a")
    await backend.once_abandon(OnceAbandonParams("k", "a"))
    assert await claim(backend, "b") == CLAIMED
    await backend.once_finish(OnceFinishParams("k", "b", b"2", ttl=60))
    await backend.once_abandon(OnceAbandonParams("k", "b"))  # a stored result stays
    assert await claim(backend, "c") == OnceClaim(OnceState.DONE, b"2")


async def test_a_claim_whose_lease_expired_can_be_taken_again(backend: Backend) -> None:
    """Two claims that differ only in their lease: one of an hour (which no loaded machine
    runs past between two statements) stays busy; one of 0.2 s is taken once it expires."""
    assert await claim(backend, "a", lease=0.2) == CLAIMED
    assert await claim(backend, "a", lease=3600, key="hour") == CLAIMED
    assert await claim(backend, "b", key="hour") == BUSY
    taken = await wait_until(
        lambda: _claimed(backend, "b"), timeout=10, what="the expired claim to be taken"
    )
    assert taken == CLAIMED
    await backend.once_finish(OnceFinishParams("k", "a", b"late", ttl=60))  # no longer a's
    assert await claim(backend, "c") == BUSY
    assert await claim(backend, "b", key="hour") == BUSY  # the hour's lease still holds


async def test_a_result_past_its_ttl_lets_the_key_be_claimed_again(backend: Backend) -> None:
    await claim(backend, "a")
    await backend.once_finish(OnceFinishParams("k", "a", b"1", ttl=0.2))
    retaken = await wait_until(
        lambda: _claimed(backend, "b"), timeout=10, what="the stored result to expire"
    )
    assert retaken == CLAIMED


async def _claimed(backend: Backend, owner: str) -> OnceClaim | None:
    found = await claim(backend, owner)
    return found if found.state == OnceState.CLAIMED else None
