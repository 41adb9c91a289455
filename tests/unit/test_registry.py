"""The registry client's failure modes, against a port nothing listens on."""

from __future__ import annotations

import pytest

from kappa import registry
from kappa.exceptions import RegistryUnavailableError

DEAD = "http://127.0.0.1:9/apis/ccompat/v7"
SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "FIRST_WAIT_S", 0.01)


@pytest.mark.parametrize(
    "call",
    [
        lambda: registry.register(DEAD, "s-value", SCHEMA),  # confluent client (httpx) first
        lambda: registry.latest(DEAD, "s-value"),  # plain HTTP (requests)
        lambda: registry.subject_level(DEAD, "s-value"),
    ],
    ids=["register", "latest", "subject_level"],
)
def test_a_refused_connection_is_retried_then_named(call: object) -> None:
    with pytest.raises(RegistryUnavailableError, match=r"127\.0\.0\.1:9.*KAPPA_REGISTRY_URL"):
        call()  # type: ignore[operator]
