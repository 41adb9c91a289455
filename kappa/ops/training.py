"""Training as an operator runs it: periodic rounds, and the reproduction of a logged run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from kappa.exceptions import KappaError
from kappa.settings import Settings

logger = logging.getLogger(__name__)


class UnknownRunError(KappaError):
    """No MLflow run has the id asked for."""


def rounds(
    settings: Settings, period: timedelta, sleep: Callable[[float], None] = time.sleep
) -> Iterator[dict[str, Any]]:
    """Train now, then once per ``period`` (measured start to start), forever.

    Yields:
        Each round's result; a round whose input tables have no new snapshot since the
        newest run is skipped, and its result says so (``{"skipped": True, "reason"}``).
    """
    from training import trainer

    while True:
        started = time.monotonic()
        yield trainer.round_or_skip(settings)
        wait = period.total_seconds() - (time.monotonic() - started)
        logger.debug("next training round in %.0f s", max(0.0, wait))
        sleep(max(0.0, wait))


def reproduce(settings: Settings, run_id: str) -> dict[str, Any]:
    """Rebuild run ``run_id``'s dataset from its pinned snapshots, retrain and compare.

    Raises:
        UnknownRunError: The tracking store has no such run.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(tracking_uri=settings.tracking_uri).get_run(run_id)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise UnknownRunError(
            f"no MLflow run '{run_id}' in the tracking store; copy a run id from "
            "`kappa report` or MLflow's UI (`kappa mlflow ui`)"
        ) from exc
    from training import trainer  # pandas and scikit-learn: only for a run that exists

    return trainer.reproduce(settings, run_id)


def promote(settings: Settings, run_id: str) -> dict[str, Any]:
    """Make run ``run_id``'s model the champion if it beat the champion it was scored against.

    A run trained with ``promote=False`` (``kappa train --no-promote``) holds the
    comparison in its tags. The alias moves only when the run won and the champion is
    still the version it was compared with (another round may have been promoted in
    between; then this run must be retrained to compete fairly).

    Returns:
        ``{"promoted": bool, "reason": str, "version": str | None}``.

    Raises:
        UnknownRunError: No such run, or it registered no model version.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training import trainer

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise UnknownRunError(f"no MLflow run '{run_id}' in the tracking store") from exc
    name = settings.training.model_name
    versions = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not versions:
        raise UnknownRunError(f"run {run_id} registered no version of model '{name}'")
    version = str(versions[0].version)
    tags, metrics = run.data.tags, run.data.metrics
    try:
        champion = str(client.get_model_version_by_alias(name, trainer.CHAMPION).version)
    except MlflowException:
        champion = "none"
    result: dict[str, Any] = {"run_id": run_id, "version": version, "champion_before": champion}
    if champion == version:
        return {**result, "promoted": False, "reason": f"version {version} is already champion"}
    if tags.get(trainer.BETTER) != "true":
        return {
            **result,
            "promoted": False,
            "reason": f"roc_auc {metrics.get('roc_auc')} does not beat the champion's "
            f"{metrics.get('champion_roc_auc_same_validation')} on the same validation set",
        }
    if tags.get(trainer.COMPARED_WITH) != champion:
        return {
            **result,
            "promoted": False,
            "reason": f"the champion changed since the run was scored (version "
            f"{tags.get(trainer.COMPARED_WITH)} then, {champion} now): retrain to compete",
        }
    client.set_registered_model_alias(name, trainer.CHAMPION, version)
    client.set_tag(run_id, "kappa.champion", "true")
    return {**result, "promoted": True, "reason": f"version {version} is the new champion"}
