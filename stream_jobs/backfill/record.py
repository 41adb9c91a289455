"""A backfill's record: what it replays, where it stands, and where that is kept.

State lives in ``<state>/backfills/<id>.json``, written atomically after every step.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kappa.exceptions import KappaError
from kappa.settings import Settings
from stream_jobs.enrichment import CUSTOMERS


class BackfillError(KappaError):
    """A backfill that cannot be created, run, verified or published as asked."""


class RangeDeletedError(BackfillError):
    """The requested range is partly gone from Kafka (retention)."""


@dataclass
class Backfill:
    id: str
    job: str
    feature_sets: list[str]
    topic: str
    start: dict[str, int]  # partition -> first offset (inclusive)
    end: dict[str, int]  # partition -> last offset (exclusive)
    from_arg: str
    to_arg: str
    namespace: str
    live_namespace: str
    live_instance: str
    # The customer changelog the enrichment looks up as of each window's end (as live)
    customers: str = CUSTOMERS
    watermark_delay: str = ""  # of the replay, as Spark reads it ("182 seconds")
    # The replay's newest event time less that delay: staged windows end at or before it
    watermark: str | None = None
    lower: str | None = None  # windows starting before this may be partial (ISO time)
    status: str = "created"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str | None = None
    verify: dict[str, Any] | None = None
    published: dict[str, int] | None = None
    error: str | None = None

    @property
    def instance(self) -> str:
        return f"backfill_{self.id}"

    @property
    def total_offsets(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)


def _dir(settings: Settings) -> Path:
    return settings.stack.state_dir / "backfills"


def save(settings: Settings, backfill: Backfill) -> None:
    path = _dir(settings) / f"{backfill.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(backfill), indent=2, default=str))
    tmp.replace(path)


def load(settings: Settings, backfill_id: str) -> Backfill:
    path = _dir(settings) / f"{backfill_id}.json"
    if not path.exists():
        known = ", ".join(b.id for b in list_all(settings)) or "none"
        raise BackfillError(
            f"no backfill '{backfill_id}' (known: {known}); see `kappa backfill list`"
        )
    return Backfill(**json.loads(path.read_text()))


def list_all(settings: Settings) -> list[Backfill]:
    folder = _dir(settings)
    if not folder.exists():
        return []
    found = [Backfill(**json.loads(p.read_text())) for p in folder.glob("*.json")]
    return sorted(found, key=lambda b: b.created_at)
