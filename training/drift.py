"""Drift: each model input's distribution now against the champion's training data.

* **Two sides, one computation.** The model inputs (same code as training,
  ``training.dataset``) of every sample whose time ``t`` lies in the last
  ``KAPPA_TRAINING_DRIFT_WINDOW`` of event time, labelled or not (the newest have no
  label horizon yet): at the snapshot ids the champion's MLflow run pinned
  (``kappa.snapshot.*`` tags; time travel gives the rows it learned from), the
  reference, and at the tables' current snapshots, the most recent closed windows.
  The same span on both sides: inputs that depend on how long a user has been seen
  (rates since first seen) are compared at the same distance from the data's end.
* **Population stability index** per feature: the reference's deciles are the bins
  (its distinct values when it has fewer), shares floored at 0.0001 so an empty bin is
  finite: ``PSI = sum((current - reference) * ln(current / reference))``. The usual
  reading: below 0.1 stable, 0.1 to 0.25 moderate, above 0.25 a shift. A feature drifts
  past ``KAPPA_TRAINING_DRIFT_PSI``.
* **History inputs** (over a user's whole history: the ``*_total`` counts and rates,
  the session history, visits per hour) move with the history's length by construction
  (totals grow, rates since first seen narrow as they converge), so a later window
  always differs: they are reported, and do not count as drift.
* **Label rate** of the reference and of the current samples whose horizon is covered.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kappa.exceptions import KappaError
from kappa.settings import Settings
from training import dataset
from training.dataset import FEATURES, LABEL, Inputs

FLOOR = 1e-4  # share given to an empty bin
BINS = 10
HISTORY = frozenset(
    [
        *(f for f in FEATURES if f.endswith("_total") or f.startswith("session")),
        "visits_per_hour",
    ]
)


class DriftError(KappaError):
    """No reference to compare with (no champion, or its snapshots are gone)."""


def _edges(reference: np.ndarray, bins: int) -> np.ndarray:
    distinct = np.unique(reference)
    if len(distinct) <= bins:  # a discrete feature: one bin per value seen in training
        edges: np.ndarray = (distinct[:-1] + distinct[1:]) / 2
        return edges
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def psi(reference: np.ndarray, current: np.ndarray, bins: int = BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (both 1-D, no NaN)."""
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    edges = _edges(reference, bins)
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    r = np.maximum(ref / ref.sum(), FLOOR)
    c = np.maximum(cur / cur.sum(), FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def compare(reference: pd.DataFrame, current: pd.DataFrame, threshold: float) -> dict[str, Any]:
    """Per feature PSI of ``current`` against ``reference``; which features drifted; label rates."""
    per_feature = {}
    for name in FEATURES:
        value = psi(reference[name].to_numpy(float), current[name].to_numpy(float))
        history = name in HISTORY
        per_feature[name] = {
            "psi": round(value, 4),
            "history": history,
            "drifted": bool(value > threshold) and not history,
        }
    labelled = current[LABEL].dropna()
    reference_labelled = reference[LABEL].dropna()
    return {
        "features": per_feature,
        "drifted": [n for n, f in per_feature.items() if f["drifted"]],
        "max_psi": max(f["psi"] for f in per_feature.values() if not f["history"]),
        "threshold": threshold,
        "label_rate": {
            "reference": round(float(reference_labelled.mean()), 4)
            if len(reference_labelled)
            else None,
            "current": round(float(labelled.mean()), 4) if len(labelled) else None,
            "current_labelled_samples": len(labelled),
        },
        "samples": {"reference": len(reference), "current": len(current)},
    }


def recent_samples(
    settings: Settings, inputs: Inputs, snapshots: dict[str, int]
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Every sample of the last drift window at ``snapshots``, with its label where the
    horizon is covered (NaN elsewhere); and the window's start.

    Raises:
        DatasetError: No activity or no orders at ``snapshots``.
    """
    cfg = settings.training
    delay = pd.Timedelta(settings.features.watermark_delay)
    horizon = pd.Timedelta(cfg.horizon)
    activity, sessions, orders = dataset.read_inputs(settings, inputs, snapshots)
    frame = dataset.samples(activity, delay, pd.Timedelta(cfg.lookback))
    since = frame["t"].max() - pd.Timedelta(cfg.drift_window)
    frame = frame[frame["t"] >= since].sort_values(["t", "user_id"]).reset_index(drop=True)
    frame = dataset.with_session_history(frame, dataset.session_history(sessions, delay))
    covered = frame["t"] <= pd.to_datetime(orders["created_at"], utc=True).max() - horizon
    frame[LABEL] = dataset.label(frame, orders, horizon).where(covered)
    return frame, since


def champion_snapshots(settings: Settings) -> tuple[str, dict[str, int]]:
    """(run id, pinned snapshot ids) of the champion model's training run."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.trainer import CHAMPION, pinned_snapshots

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    name = settings.training.model_name
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        raise DriftError(
            f"model '{name}' has no champion yet: train one (`kappa train`), or give "
            "--reference SNAPSHOTS"
        ) from exc
    run_id = str(version.run_id)
    return run_id, pinned_snapshots(client.get_run(run_id).data.tags)


def report(
    settings: Settings,
    *,
    reference: dict[str, int] | None = None,
    current: dict[str, int] | None = None,
    inputs: Inputs | None = None,
) -> dict[str, Any]:
    """Drift of the recent samples at ``current`` (default: the current snapshots) against
    those at the champion's pinned snapshots (or at ``reference``)."""
    inputs = inputs or Inputs.from_settings(settings)
    run_id = None
    if reference is None:
        run_id, reference = champion_snapshots(settings)
    try:
        then, reference_since = recent_samples(settings, inputs, reference)
    except dataset.DatasetError as exc:
        raise DriftError(f"no reference samples at {reference}: {exc}") from exc
    current = current or dataset.pin(settings, inputs)
    now, since = recent_samples(settings, inputs, current)
    out = compare(then, now, settings.training.drift_psi)
    out.update(
        champion_run_id=run_id,
        reference_snapshots=reference,
        reference_since=reference_since.isoformat(),
        current_snapshots=current,
        current_since=since.isoformat(),
    )
    return out
