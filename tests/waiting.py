"""Waiting on a condition instead of sleeping: shared by the unit and integration tiers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """``check()``'s first truthy value, polled every ``every_s``; after ``timeout_s`` the
    test fails naming ``what`` it waited for."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
