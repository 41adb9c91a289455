"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def unique_name():  # type: ignore[no-untyped-def]
    """Factory of random names, so tests never share topics, groups or tables."""

    def make(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"

    return make
