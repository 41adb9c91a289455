"""The training data quality gate on a local catalog: good inputs pass, each broken rule
is named, and `kappa quality check` reports and exits 1 without a traceback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner

from kappa.cli import cli
from kappa.settings import Settings
from tests.unit.lakekit import append
from training import quality
from training.dataset import Inputs, pin

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _fill(settings: Settings, *, windows: int = 200, bad: bool = False) -> Inputs:
    inputs = Inputs.from_settings(settings)
    activity = [
        {
            "user_id": i % 40,
            "window_start": T0 + timedelta(minutes=i),
            "window_end": T0 + timedelta(minutes=i + 1),
            "events": 3,
            "page_views": 2,
            "searches": 0,
            "cart_adds": 1,
            "cart_removes": 0,
            # bad: one window with more checkouts than events, and half the segments lost
            "checkouts": 5 if bad and i == 7 else 0,
            "distinct_products": 1,
            "cart_value": Decimal("9.99"),
            "segment": None if bad and i % 2 else "regular",
            "country": "DE",
            "max_produced_at": T0,
            "computed_at": T0,
        }
        for i in range(windows)
    ]
    append(settings, inputs.activity, activity)
    sessions = [
        {
            "user_id": 1,
            "session_start": T0,
            "session_end": T0 + timedelta(minutes=31),
            "last_event_at": T0 + timedelta(minutes=1),
            "events": 4,
            "distinct_products": 1,
            "cart_value": Decimal("0"),
            "converted": False,
            "max_produced_at": T0,
            "computed_at": T0,
        }
    ]
    append(settings, inputs.sessions, sessions)
    orders = [
        {
            "op": "c",
            "order_id": i,
            "customer_id": i % 40,
            "total": Decimal("20.00"),
            "created_at": T0 + timedelta(minutes=i),
            "lsn": i,
            "commit_ts": T0,
            "kafka_topic": "shop.public.orders",
            "kafka_partition": 0,
            "kafka_offset": i,
        }
        for i in range(30)
    ]
    append(settings, inputs.orders, orders)
    return inputs


def test_good_inputs_pass_every_rule(lake: Settings) -> None:
    inputs = _fill(lake)
    outcomes = quality.gate(lake, inputs, pin(lake, inputs))
    assert all(o.passed for o in outcomes)
    assert len(outcomes) == len(quality.RULES) + 3  # every rule, and each snapshot's age


def test_each_broken_rule_is_named(lake: Settings) -> None:
    inputs = _fill(lake, bad=True)
    with pytest.raises(quality.QualityError) as caught:
        quality.gate(lake, inputs, pin(lake, inputs))
    message = str(caught.value)
    assert "null share of segment is 0.5, must be <= 0.1" in message
    assert "share of more checkouts than events is 0.005, must be <= 0" in message
    assert message.count(inputs.activity) == 2 and inputs.orders not in message


def test_too_few_rows_and_stale_snapshots_are_refused(lake: Settings) -> None:
    inputs = _fill(lake, windows=20)
    stale = lake.model_copy(
        update={"training": lake.training.model_copy(update={"max_input_age": timedelta(0)})}
    )
    broken = [o for o in quality.evaluate(stale, inputs, pin(lake, inputs)) if not o.passed]
    assert sorted(o.check for o in broken) == ["rows", *["snapshot age (s)"] * 3]


def test_quality_check_command_reports_and_fails_in_one_line(lake: Settings) -> None:
    inputs = _fill(lake, bad=True)
    result = CliRunner().invoke(cli, ["quality", "check", "-o", "json"], prog_name="kappa")
    assert result.exit_code == 1 and "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert not report["passed"] and report["snapshots"] == pin(lake, inputs)
    assert sum(not c["passed"] for c in report["checks"]) == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2 of 17 quality checks failed" in errors[0]
