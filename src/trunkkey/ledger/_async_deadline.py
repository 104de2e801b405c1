"""One deadline per async ledger call, kept even when the client cannot stop in time.

Cancelling a coroutine that is waiting on the server is not always quick:
psycopg answers a cancellation by asking the server to cancel the query and
waiting for it (up to seconds), and a hung server answers nothing. So a call
runs as a task of its own, and the caller waits for that task only until the
deadline: then the task is cancelled and left to finish its clean-up in the
background (closing its connection, which is never reused), while the caller
gets a :class:`TimeoutError` at once, and the verifier denies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

#: Tasks left to finish their clean-up: referenced here so none is collected mid-way.
_ABANDONED: set[asyncio.Task[Any]] = set()


def _forget(task: asyncio.Task[Any]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved: an abandoned call's error is already answered


def _abandon(task: asyncio.Task[Any]) -> None:
    task.cancel()
    _ABANDONED.add(task)
    task.add_done_callback(_forget)


async def within(timeout_s: float, work: Coroutine[Any, Any, _T]) -> _T:
    """``await work``, but raise :class:`TimeoutError` after ``timeout_s`` whatever it does.

    The caller's own cancellation is passed on to ``work`` the same way: it is
    cancelled and left to clean up, never awaited.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout_s))
    except BaseException:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError(f"no answer within {timeout_s:.3f} s")
    return task.result()
