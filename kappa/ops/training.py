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
