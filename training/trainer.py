"""The purchase-propensity trainer: pinned snapshots in, an MLflow run and a registered model out.

One round (:func:`train`): pin a snapshot of every input table, build the
point-in-time training set (``training.dataset``), fit a gradient-boosted
classifier with balanced class weights (positives are a few percent of the
samples), evaluate on the later validation period, and log everything to MLflow:
params, metrics, the dataset (as an MLflow input with its content digest), tags
with every snapshot id, the Kafka offsets behind the feature snapshots, the click
schema ids and the code version, and the model with its signature and an input
example, registered as ``purchase-propensity``. The pinned snapshots are tagged
``mlflow-<run id>`` in Iceberg so snapshot expiry keeps them. The alias
``champion`` moves to the new version only when it beats the current champion's
ROC AUC on this round's validation set (the same protocol for both).

:func:`reproduce` rebuilds a logged run's dataset from its snapshot tags, checks
the digest, retrains with its params and compares the metrics.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from iceberg.admin import load, tag
from kappa import checkpoints, durations, names, objectstore
from kappa.exceptions import KappaError
from kappa.settings import PROJECT_ROOT, Settings
from training import quality
from training.dataset import FEATURES, LABEL, Dataset, Inputs, build, pin

CHAMPION = "champion"
COMPARED_WITH = "kappa.compared_with_version"  # the champion version the run was scored against
BETTER = "kappa.better_than_champion"
SNAPSHOT_TAG = "kappa.snapshot."
OFFSETS_TAG = "kappa.kafka_offsets."


class TrainingError(KappaError):
    """A training round or a reproduction that cannot go on."""


@dataclass
class Result:
    run_id: str
    model_version: str | None
    metrics: dict[str, float]
    snapshots: dict[str, int]
    digest: str
    champion: bool
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_version": self.model_version,
            "metrics": self.metrics,
            "snapshots": self.snapshots,
            "digest": self.digest,
            "champion": self.champion,
            "timings_s": self.timings,
        }


def _mlflow(settings: Settings) -> Any:
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    objectstore.export_env(settings)  # boto3 under MLflow, when artifacts are on s3://
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    name = settings.training.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        mlflow.create_experiment(name, artifact_location=f"{settings.artifact_root}/{name}")
    mlflow.set_experiment(name)
    return mlflow


def fit(data: Dataset, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.08,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        class_weight="balanced",
        random_state=seed,
    )
    train = data.train
    model.fit(train[list(FEATURES)], train[LABEL])
    return model


def evaluate(model: Any, data: Dataset) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    val = data.validation
    proba = model.predict_proba(val[list(FEATURES)])[:, 1]
    return {
        "roc_auc": round(float(roc_auc_score(val[LABEL], proba)), 6),
        "pr_auc": round(float(average_precision_score(val[LABEL], proba)), 6),
        "log_loss": round(float(log_loss(val[LABEL], proba)), 6),
        "positive_rate": round(float(val[LABEL].mean()), 6),
        "positive_rate_train": round(float(data.train[LABEL].mean()), 6),
        "rows_train": float(len(data.train)),
        "rows_validation": float(len(val)),
    }


def code_version() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}{'-dirty' if dirty else ''}"


def kafka_offsets(settings: Settings, ident: str, snapshot_id: int) -> dict[str, Any] | None:
    """Kafka offsets the streaming query had consumed when it committed this snapshot.

    The snapshot's marker properties (``kappa.names``) name the micro-batch; the
    query's checkpoint holds that batch's end offsets.
    """
    from kappa.spark import checkpoint_root

    snap = load(settings, ident).snapshot_by_id(snapshot_id)
    props = snap.summary.additional_properties if snap and snap.summary else {}
    query_id, batch_id = props.get(names.QUERY_ID_PROP), props.get(names.BATCH_ID_PROP)
    if not query_id or batch_id is None:
        return None
    folder = checkpoints.find(settings, checkpoint_root(settings), query_id)
    if folder is None:
        return None
    try:
        offsets = checkpoints.batch_offsets(settings, folder, batch_id)
    except OSError:
        return None
    return {"query": folder.rsplit("/", 1)[-1], "batch": int(batch_id), "offsets": offsets}


def schema_ids(settings: Settings) -> list[int]:
    from kappa import registry

    try:
        return registry.subject_ids(settings.registry.ccompat_url, names.clicks_subject(settings))
    except registry.RegistryError:
        return []


def _champion_auc(client: Any, mlflow: Any, name: str, data: Dataset) -> tuple[Any, float] | None:
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import roc_auc_score

    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    model = mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}")
    val = data.validation
    try:
        proba = model.predict_proba(val[list(FEATURES)])[:, 1]
    except (KeyError, ValueError):  # trained on other features: cannot compete fairly
        return version, float("-inf")
    return version, float(roc_auc_score(val[LABEL], proba))


def train(
    settings: Settings,
    inputs: Inputs | None = None,
    tag_snapshots: bool = True,
    snapshots: dict[str, int] | None = None,
    promote: bool = True,
) -> Result:
    """One training round; see the module docstring.

    Args:
        snapshots: The snapshot ids to read (e.g. those a quality check passed);
            default: pin the current ones.
        promote: Move the ``champion`` alias when the model wins; without it the run
            records the comparison and :func:`promote` decides later.

    Raises:
        QualityError: The inputs break a rule of the data quality gate.
    """
    inputs = inputs or Inputs.from_settings(settings)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    snapshots = snapshots or pin(settings, inputs)
    missing = set(inputs.all()) - set(snapshots)
    if missing:
        raise TrainingError(f"no snapshot given for {', '.join(sorted(missing))}")
    quality.gate(settings, inputs, snapshots)
    data = build(settings, inputs, snapshots)
    timings["dataset"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    model = fit(data, settings.training.seed)
    metrics = evaluate(model, data)
    timings["fit"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    run_id, version, wins = _log_run(settings, inputs, data, model, metrics, promote=promote)
    timings["mlflow"] = time.perf_counter() - t2
    if tag_snapshots:
        for ident, snapshot_id in snapshots.items():
            tag(settings, ident, f"mlflow-{run_id}", snapshot_id)
    return Result(
        run_id,
        version,
        metrics,
        snapshots,
        data.digest,
        wins,
        {k: round(v, 3) for k, v in timings.items()},
    )


def _log_run(
    settings: Settings,
    inputs: Inputs,
    data: Dataset,
    model: Any,
    metrics: dict[str, float],
    *,
    promote: bool = True,
) -> tuple[str, str | None, bool]:
    """Log the round to MLflow and register its model; (run id, model version, wins).

    ``metrics`` gains the champion's score on this validation set when there is one;
    the run's tags record which champion version it was compared with.
    """
    from mlflow.tracking import MlflowClient

    mlflow = _mlflow(settings)
    client = MlflowClient()
    name = settings.training.model_name
    with mlflow.start_run() as run:
        mlflow.log_params({**data.params, **_model_params(model), "features": ",".join(FEATURES)})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(_run_tags(settings, inputs, data))
        frame = data.frame.assign(t=data.frame["t"].dt.tz_convert(None))
        dataset = mlflow.data.from_pandas(
            frame, name="purchase-propensity", targets=LABEL, digest=data.digest[:36]
        )
        mlflow.log_input(dataset, context="training+validation")
        version = _log_model(mlflow, model, data, name)
        current = _champion_auc(client, mlflow, name, data)
        wins = current is None or metrics["roc_auc"] > current[1]
        if current is not None and current[1] != float("-inf"):
            # logged and returned alike: the result shows every metric the run holds
            metrics["champion_roc_auc_same_validation"] = current[1]
            mlflow.log_metric("champion_roc_auc_same_validation", current[1])
        mlflow.set_tag(COMPARED_WITH, str(current[0].version) if current is not None else "none")
        mlflow.set_tag(BETTER, str(wins).lower())
        if promote and wins and version is not None:
            client.set_registered_model_alias(name, CHAMPION, version)
        mlflow.set_tag("kappa.champion", str(promote and wins).lower())
        return str(run.info.run_id), version, wins


def _run_tags(settings: Settings, inputs: Inputs, data: Dataset) -> dict[str, str]:
    """Everything a reproduction needs: digest, code, schema ids, split, snapshots, offsets."""
    tags = {
        "kappa.dataset_digest": data.digest,
        "kappa.code_version": code_version(),
        "kappa.schema_ids": json.dumps(schema_ids(settings)),
        "kappa.split_at": data.split_at.isoformat(),
        "kappa.validation_from": data.validation_from.isoformat(),
        "kappa.inputs": json.dumps(list(inputs.all())),
    }
    for ident, snapshot_id in data.snapshots.items():
        tags[f"{SNAPSHOT_TAG}{ident}"] = str(snapshot_id)
        offsets = kafka_offsets(settings, ident, snapshot_id)
        if offsets is not None:
            tags[f"{OFFSETS_TAG}{ident}"] = json.dumps(offsets)[:5000]
    return tags


def _log_model(mlflow: Any, model: Any, data: Dataset, name: str) -> str | None:
    """Log and register the model with its signature; the new version, if registered."""
    from mlflow.models import infer_signature

    example = data.train[list(FEATURES)].head(5)
    signature = infer_signature(example, model.predict_proba(example)[:, 1])
    # MLflow prints "Successfully registered model ..." straight to stderr (not through
    # logging): kept in kappa's log file, off the user's terminal.
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=name,
            # Our own HistGradientBoosting model: its tree predictor is a type we trust.
            skops_trusted_types=[
                "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            ],
        )
    for line in filter(None, printed.getvalue().splitlines()):
        logging.getLogger("mlflow.registry").info(line)
    return str(info.registered_model_version) if info.registered_model_version else None


def _model_params(model: Any) -> dict[str, Any]:
    return {f"model.{k}": v for k, v in model.get_params().items()}


def last_snapshots(settings: Settings) -> tuple[str, dict[str, int]] | None:
    """(run id, snapshot ids) of the newest run in the experiment, if any."""
    mlflow = _mlflow(settings)
    runs = mlflow.search_runs(
        order_by=["attributes.start_time DESC"], max_results=1, output_format="list"
    )
    if not runs:
        return None
    run = runs[0]
    return run.info.run_id, pinned_snapshots(run.data.tags)


def pinned_snapshots(tags: dict[str, str]) -> dict[str, int]:
    """table -> snapshot id, from a run's ``kappa.snapshot.<table>`` tags."""
    return {
        k.removeprefix(SNAPSHOT_TAG): int(v) for k, v in tags.items() if k.startswith(SNAPSHOT_TAG)
    }


def pending(settings: Settings, inputs: Inputs | None = None) -> dict[str, Any]:
    """Would a round train? ``{"skipped", "reason", "snapshots"}`` for the current snapshots:
    skipped when no input table has a new snapshot since the newest run."""
    inputs = inputs or Inputs.from_settings(settings)
    previous = last_snapshots(settings)
    current = pin(settings, inputs)
    if previous is None:
        return {"skipped": False, "reason": "no run yet", "snapshots": current}
    if previous[1] == current:
        return {
            "skipped": True,
            "reason": f"no input table has a new snapshot since run {previous[0]}",
            "snapshots": current,
        }
    newer = sorted(k for k, v in current.items() if previous[1].get(k) != v)
    return {
        "skipped": False,
        "reason": f"new snapshots of {', '.join(newer)} since run {previous[0]}",
        "snapshots": current,
    }


def round_or_skip(settings: Settings, inputs: Inputs | None = None) -> dict[str, Any]:
    """Train unless no input table has a new snapshot since the newest run."""
    inputs = inputs or Inputs.from_settings(settings)
    state = pending(settings, inputs)
    if state["skipped"]:
        return state
    return {"skipped": False, **train(settings, inputs, snapshots=state["snapshots"]).as_dict()}


def reproduce(settings: Settings, run_id: str) -> dict[str, Any]:
    """Rebuild a run's dataset from its pinned snapshots, retrain, compare."""
    mlflow = _mlflow(settings)
    run = mlflow.get_run(run_id)
    tags, params = run.data.tags, run.data.params
    snapshots = pinned_snapshots(tags)
    if not snapshots:
        raise TrainingError(f"run {run_id} has no kappa snapshot tags: not a kappa training run")
    idents = json.loads(tags["kappa.inputs"])
    inputs = Inputs(*idents)
    replay = settings.model_copy(
        update={
            "training": settings.training.model_copy(
                update={
                    "horizon": _logged_duration(params, "horizon"),
                    "lookback": _logged_duration(params, "lookback"),
                    "samples_per_user": int(params["samples_per_user"]),
                    "validation_fraction": float(params["validation_fraction"]),
                    "seed": int(params["seed"]),
                }
            ),
            "features": settings.features.model_copy(
                update={"watermark_delay": durations.parse(params["watermark_delay"])}
            ),
        }
    )
    data = build(replay, inputs, snapshots)
    model = fit(data, replay.training.seed)
    metrics = evaluate(model, data)
    logged = {k: v for k, v in run.data.metrics.items() if k in metrics}
    return {
        "run_id": run_id,
        "snapshots": snapshots,
        "digest_logged": tags.get("kappa.dataset_digest"),
        "digest_rebuilt": data.digest,
        "identical_digest": tags.get("kappa.dataset_digest") == data.digest,
        "metrics_logged": logged,
        "metrics_rebuilt": metrics,
        "identical_metrics": all(np.isclose(logged[k], metrics[k]) for k in logged),
    }


def _logged_duration(params: dict[str, str], name: str) -> timedelta:
    """A duration param of a run; runs logged before durations were timedeltas hold
    ``<name>_minutes``."""
    if name in params:
        return durations.parse(params[name])
    return timedelta(minutes=int(params[f"{name}_minutes"]))


def history(settings: Settings, max_runs: int = 200) -> list[dict[str, Any]]:
    """Every training run of the experiment, oldest first: metrics, inputs, model version."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow = _mlflow(settings)
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name(settings.training.experiment)
    if experiment is None:
        return []
    name = settings.training.model_name
    versions = {v.run_id: v.version for v in client.search_model_versions(f"name='{name}'")}
    try:
        champion = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        champion = None
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=max_runs
    )
    out = []
    for run in reversed(runs):
        tags = run.data.tags
        version = versions.get(run.info.run_id)
        out.append(
            {
                "run_id": run.info.run_id,
                "start_time": run.info.start_time / 1000,
                "status": run.info.status,
                "metrics": dict(run.data.metrics),
                "model_name": name,
                "model_version": str(version) if version is not None else None,
                "champion": version is not None and str(version) == champion,
                "dataset_digest": tags.get("kappa.dataset_digest"),
                "inputs": json.loads(tags.get("kappa.inputs", "[]")),
                "snapshots": pinned_snapshots(tags),
            }
        )
    return out
