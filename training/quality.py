"""The data quality gate: what a training round's pinned snapshots must satisfy.

Declared once, here (:data:`RULES`), and run on the exact snapshots the round will
read: by the trainer before it builds a dataset, by ``kappa quality check`` and by
the Airflow training DAG's first task. A round on data that breaks a rule fails with
every broken rule named (table, check, observed value, bound) instead of training.

Each rule is a DuckDB expression over one input table, at its pinned snapshot, and
bounds on its value: row counts, null shares, value ranges. Freshness is the age of
each pinned snapshot (its commit time against now), bounded by
``KAPPA_TRAINING_MAX_INPUT_AGE``.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from iceberg.admin import load
from kappa.settings import Settings
from training.dataset import DatasetError, Inputs


class QualityError(DatasetError):
    """The pinned inputs break a quality rule; the message lists every broken one."""


@dataclass(frozen=True)
class Rule:
    """``low <= value(expr over the role's table) <= high``."""

    role: str  # an Inputs field: activity | sessions | orders
    check: str  # what a person reads
    expr: str  # DuckDB SQL over the table `t`, one number
    low: float | None = None
    high: float | None = None


def _rows(role: str, at_least: int) -> Rule:
    return Rule(role, "rows", "count(*)", low=at_least)


def _null_share(role: str, column: str, at_most: float = 0.0) -> Rule:
    expr = f"coalesce(avg(({column} is null)::int), 0)"
    return Rule(role, f"null share of {column}", expr, high=at_most)


def _min(role: str, column: str, low: float) -> Rule:
    return Rule(role, f"min {column}", f"coalesce(min({column}), {low})", low=low)


def _never(role: str, condition: str, what: str) -> Rule:
    return Rule(role, f"share of {what}", f"coalesce(avg(({condition})::int), 0)", high=0.0)


RULES: tuple[Rule, ...] = (
    _rows("activity", 100),
    _null_share("activity", "segment", at_most=0.1),
    _min("activity", "events", 1),
    _min("activity", "cart_value", 0),
    _min("activity", "distinct_products", 0),
    _never("activity", "checkouts > events", "more checkouts than events"),
    _never("activity", "window_end <= window_start", "empty windows"),
    _min("sessions", "events", 1),
    _never("sessions", "session_end <= session_start", "empty sessions"),
    _rows("orders", 10),
    _null_share("orders", "customer_id"),
    _null_share("orders", "created_at"),
    _min("orders", "total", 0),
    _never("orders", "op not in ('c', 'r', 'u', 'd')", "unknown change ops"),
)


@dataclass(frozen=True)
class Outcome:
    table: str
    snapshot_id: int
    check: str
    observed: float
    low: float | None
    high: float | None

    @property
    def passed(self) -> bool:
        return (self.low is None or self.observed >= self.low) and (
            self.high is None or self.observed <= self.high
        )

    def describe(self) -> str:
        bound = " and ".join(
            part
            for part in (
                f">= {self.low:g}" if self.low is not None else "",
                f"<= {self.high:g}" if self.high is not None else "",
            )
            if part
        )
        where = f"{self.table}@{self.snapshot_id}"
        return f"{where}: {self.check} is {self.observed:g}, must be {bound}"


def evaluate(settings: Settings, inputs: Inputs, snapshots: dict[str, int]) -> list[Outcome]:
    """Every rule, and every snapshot's age, on ``snapshots`` (one DuckDB query per table)."""
    import duckdb

    outcomes = []
    max_age = settings.training.max_input_age.total_seconds()
    for role in ("activity", "sessions", "orders"):
        ident: str = getattr(inputs, role)
        snapshot_id = snapshots[ident]
        table = load(settings, ident)
        snapshot = table.snapshot_by_id(snapshot_id)
        if snapshot is None:
            raise QualityError(f"snapshot {snapshot_id} of {ident} no longer exists")
        age_s = time.time() - snapshot.timestamp_ms / 1000
        outcomes.append(Outcome(ident, snapshot_id, "snapshot age (s)", age_s, None, max_age))
        rules = [r for r in RULES if r.role == role]
        t = table.scan(snapshot_id=snapshot_id, selected_fields=_columns(table, rules)).to_arrow()
        with duckdb.connect() as con:
            con.register("t", t)
            row = con.execute("select " + ", ".join(r.expr for r in rules) + " from t").fetchone()
        assert row is not None
        outcomes += [
            Outcome(ident, snapshot_id, r.check, float(v), r.low, r.high)
            for r, v in zip(rules, row, strict=True)
        ]
    return outcomes


def _columns(table: Any, rules: list[Rule]) -> tuple[str, ...]:
    """The table's columns any of ``rules`` mentions (a scan reads only those)."""
    names = [f.name for f in table.schema().fields]
    used = tuple(n for n in names if any(re.search(rf"\b{n}\b", r.expr) for r in rules))
    return used or tuple(names[:1])


def gate(settings: Settings, inputs: Inputs, snapshots: dict[str, int]) -> list[Outcome]:
    """The outcomes, when every rule holds.

    Raises:
        QualityError: Some rule is broken; the message lists each.
    """
    outcomes = evaluate(settings, inputs, snapshots)
    broken = [o for o in outcomes if not o.passed]
    if broken:
        raise QualityError(
            "the data quality gate refused the round: "
            + "; ".join(o.describe() for o in broken)
            + " (rules: training/quality.py)"
        )
    return outcomes


def report(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    return [{**asdict(o), "passed": o.passed} for o in outcomes]
