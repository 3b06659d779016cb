"""`taskflare.raised`: which exceptions caught around user code stop the task, and how
the others read as error text."""

from __future__ import annotations

import asyncio

from taskflare.raised import describe, is_stop


def test_systemexit_keyboardinterrupt_and_errors_are_failures_generatorexit_a_stop() -> None:
    assert not is_stop(SystemExit(3))
    assert not is_stop(KeyboardInterrupt())
    assert not is_stop(ValueError("x"))
    assert is_stop(GeneratorExit())
    assert not is_stop(asyncio.CancelledError())  # no running loop: a thread's own code


async def test_a_cancelled_error_is_a_stop_only_while_a_cancel_is_requested() -> None:
    seen: list[bool] = []
    started = asyncio.Event()

    async def own() -> None:
        try:
            raise asyncio.CancelledError()
        except asyncio.CancelledError as exc:
            seen.append(is_stop(exc))

    async def cancelled() -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            seen.append(is_stop(exc))
            raise

    await asyncio.create_task(own())
    task = asyncio.create_task(cancelled())
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen == [False, True]


def test_describe_names_the_type_and_message_and_says_whose_cancel_it_was() -> None:
    assert describe(SystemExit(3)) == "SystemExit: 3"
    assert describe(SystemExit()) == "SystemExit"
    assert describe(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert describe(asyncio.CancelledError()).startswith(
        "CancelledError: raised by the code itself"
    )
