"""Drift of the model inputs: PSI against an independent computation, and the report on a
local lake whose recent traffic is, or is not, shifted from the reference's."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from click.testing import CliRunner

from kappa.cli import cli
from kappa.settings import Settings
from tests.unit.lakekit import append
from training import drift
from training.dataset import Inputs, pin

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def _psi_by_hand(ref_shares: list[float], cur_shares: list[float]) -> float:
    return sum((c - r) * math.log(c / r) for r, c in zip(ref_shares, cur_shares, strict=True))


def test_psi_of_a_discrete_input_is_the_textbook_sum() -> None:
    reference = np.array([0.0] * 50 + [1.0] * 50)
    current = np.array([0.0] * 20 + [1.0] * 80)
    assert drift.psi(reference, current) == pytest.approx(_psi_by_hand([0.5, 0.5], [0.2, 0.8]))
    assert drift.psi(reference, reference) == 0.0
    # A value never seen in training falls in the outer bin; an empty bin counts as 0.0001.
    unseen = np.array([0.0] * 50 + [7.0] * 50)
    assert drift.psi(reference, unseen) == pytest.approx(_psi_by_hand([0.5, 0.5], [0.5, 0.5]))
    only_zeros = np.zeros(10)
    assert drift.psi(reference, only_zeros) == pytest.approx(_psi_by_hand([0.5, 0.5], [1.0, 1e-4]))


def test_psi_of_a_continuous_input_bins_by_the_references_deciles() -> None:
    rng = np.random.default_rng(3)
    reference = rng.normal(10, 2, 5000)
    assert drift.psi(reference, rng.normal(10, 2, 5000)) < 0.02
    assert drift.psi(reference, rng.normal(13, 2, 5000)) > 0.25


def _traffic(
    settings: Settings, inputs: Inputs, start: datetime, minutes: int, *, seed: int, busy: float
) -> None:
    """Users' 1-minute windows (``busy`` scales how much they do), their sessions and orders."""
    rng = np.random.default_rng(seed)
    windows, orders = [], []
    for m in range(minutes):
        for user in range(1, 81):
            if rng.random() > 0.2:
                continue
            views = int(rng.poisson(2 * busy)) + 1
            adds = int(rng.poisson(0.5 * busy))
            at = start + timedelta(minutes=m)
            windows.append(
                {
                    "user_id": user,
                    "window_start": at,
                    "window_end": at + timedelta(minutes=1),
                    "events": views + adds,
                    "page_views": views,
                    "searches": 0,
                    "cart_adds": adds,
                    "cart_removes": 0,
                    "checkouts": 0,
                    "distinct_products": min(views, 3),
                    "cart_value": Decimal(adds * 10),
                    "segment": "regular",
                    "country": "DE",
                    "max_produced_at": at,
                    "computed_at": at,
                }
            )
            if rng.random() < 0.05 + 0.1 * min(adds, 3):
                orders.append((user, at + timedelta(minutes=int(rng.integers(2, 20)))))
    append(settings, inputs.activity, windows)
    append(
        settings,
        inputs.sessions,
        [
            {
                "user_id": u,
                "session_start": start,
                "session_end": start + timedelta(minutes=31),
                "last_event_at": start + timedelta(minutes=1),
                "events": 4,
                "distinct_products": 1,
                "cart_value": Decimal("0"),
                "converted": u % 3 == 0,
                "max_produced_at": start,
                "computed_at": start,
            }
            for u in range(1, 81)
        ],
    )
    base = int(start.timestamp())
    append(
        settings,
        inputs.orders,
        [
            {
                "op": "c",
                "order_id": base + i,
                "customer_id": user,
                "total": Decimal("20.00"),
                "created_at": at,
                "lsn": base + i,
                "commit_ts": at,
                "kafka_topic": "shop.public.orders",
                "kafka_partition": 0,
                "kafka_offset": base + i,
            }
            for i, (user, at) in enumerate(orders)
        ],
    )


@pytest.mark.parametrize("busy", [1.0, 4.0])
def test_recent_traffic_drifts_only_when_its_distribution_shifted(
    lake: Settings, busy: float
) -> None:
    inputs = Inputs.from_settings(lake)
    _traffic(lake, inputs, T0, 300, seed=1, busy=1.0)
    reference = pin(lake, inputs)
    _traffic(lake, inputs, T0 + timedelta(minutes=300), 90, seed=2, busy=busy)

    report = drift.report(lake, reference=reference)

    assert report["samples"]["current"] > 500 and report["samples"]["reference"] > 500
    assert report["current_snapshots"] == pin(lake, inputs)
    shifted = {"events_recent", "page_views_recent", "cart_adds_recent", "events_5m"}
    if busy == 1.0:
        assert report["drifted"] == [], report["features"]
        assert report["max_psi"] < lake.training.drift_psi
    else:
        assert shifted <= set(report["drifted"]), report["features"]
        assert report["label_rate"]["current"] > report["label_rate"]["reference"]
    # inputs over a user's whole history move with its length: reported, never drift
    assert report["features"]["events_total"]["history"]
    assert (
        report["features"]["events_total"]["psi"] > 1
        and not report["features"]["events_total"]["drifted"]
    )
    assert report["label_rate"]["current_labelled_samples"] > 0


def test_drift_command_prints_json_and_fails_with_check_when_drifted(lake: Settings) -> None:
    inputs = Inputs.from_settings(lake)
    _traffic(lake, inputs, T0, 300, seed=1, busy=1.0)
    reference = json.dumps(pin(lake, inputs))
    _traffic(lake, inputs, T0 + timedelta(minutes=300), 90, seed=2, busy=4.0)

    shown = CliRunner().invoke(cli, ["drift", "--reference", reference, "-o", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["drifted"]
    checked = CliRunner().invoke(cli, ["drift", "--reference", reference, "--check"])
    assert checked.exit_code == 1 and "Traceback" not in checked.output
    assert "model inputs drifted past PSI 0.25" in checked.stderr
    bad = CliRunner().invoke(cli, ["drift", "--reference", "[1]"])
    assert bad.exit_code == 2 and "a JSON object of table -> snapshot id" in bad.output
