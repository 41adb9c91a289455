"""One retry policy for every client of a service: bounded attempts, exponential backoff.

Built on tenacity. A call that still fails after the last attempt raises the caller's
domain error (which names the fix), chained to the last underlying exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from kappa.exceptions import KappaError

T = TypeVar("T")
log = logging.getLogger(__name__)


def call(
    what: Callable[[], T],
    *,
    retry_on: Callable[[BaseException], bool],
    attempts: int,
    first_wait_s: float,
    fail: Callable[[BaseException], KappaError] | None = None,
    max_wait_s: float = 30.0,
    name: str = "call",
) -> T:
    """Run ``what`` until it succeeds, at most ``attempts`` times.

    Args:
        what: The call.
        retry_on: Whether an exception is transient (retried); any other is raised at once.
        attempts: Total tries, the first included (at least 1).
        first_wait_s: Wait after the first failure; doubles per attempt up to ``max_wait_s``.
        fail: Builds the domain error raised after the last transient failure; None:
            the last exception itself is raised.
        max_wait_s: Longest wait between two attempts.
        name: What is being called, for the debug log of each retry.

    Raises:
        KappaError: ``fail(last exception)`` once every attempt failed transiently.
        Exception: A failure that is not transient, at once (or the last one, without
            ``fail``).
    """

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.debug("%s failed (%s); attempt %d of %d", name, exc, state.attempt_number, attempts)

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=first_wait_s, max=max_wait_s),
        retry=retry_if_exception(retry_on),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(what)
    except Exception as exc:
        if fail is not None and retry_on(exc):
            raise fail(exc) from exc
        raise
