"""Point-in-time training sets from pinned Iceberg snapshots.

Task: for user ``u`` at time ``t``, will ``u`` place an order in ``(t, t + horizon]``?

* **Pinning.** :func:`pin` resolves one snapshot id per input table, once; every
  read is ``scan(snapshot_id=…)`` (PyIceberg time travel), so the same ids give the
  same rows for as long as the snapshots exist (the trainer tags them).
* **Point in time.** A feature window is usable at ``t`` only when it had ended
  *and could have been committed* by ``t``: the streaming job writes a window once
  the watermark passes its end, so it is available at ``window_end + watermark
  delay``. That bound is in event time, the clock the whole pipeline runs on (a
  replay or backfill commits old windows years later in wall time, without
  changing what was knowable when). Labels come only from orders created strictly
  after ``t``.
* **Times t.** Each moment a new 1-minute window of the user becomes available is
  a candidate ``t`` (the user was just active); at most ``samples_per_user`` per user
  are kept, drawn with the seed; only ``t`` whose whole horizon is covered by the
  labels table are kept.
* **Split.** By time: validation is the latest ``validation_fraction`` of ``t``,
  starting one horizon after the last training ``t`` so no label window overlaps.

The dataset digest is a SHA-256 over the columns, dtypes and values of the
frame in a fixed row order: equal digests mean equal training data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from iceberg.admin import load
from kappa.durations import to_spark
from kappa.exceptions import KappaError
from kappa.settings import Settings

ACTIVITY = "user_activity_1m"
SESSIONS = "user_sessions"
COUNTS = ("events", "page_views", "searches", "cart_adds", "cart_removes", "checkouts")
SEGMENTS = ("new", "regular", "vip", "dormant")
FEATURES = (
    *(f"{c}_recent" for c in COUNTS),
    "cart_value_recent",
    "active_minutes_recent",
    "distinct_products_max_recent",
    *(f"{c}_total" for c in COUNTS),
    "minutes_since_previous_activity",
    "net_cart_recent",
    *(f"{c}_5m" for c in ("events", "cart_adds", "checkouts")),
    *(f"{c}_last_window" for c in ("events", "cart_adds", "checkouts")),
    "sessions_done",
    "sessions_converted",
    "session_events_mean",
    "session_conversion_rate",
    "active_minutes_total",
    "visits_per_hour",
    "cart_add_rate_total",
    "checkout_rate_total",
    *(f"segment_{s}" for s in SEGMENTS),
)
LABEL = "label"


class DatasetError(KappaError):
    """The inputs cannot make a training set (empty tables, no labels in range...)."""


@dataclass(frozen=True)
class Inputs:
    """The tables a training set is read from."""

    activity: str
    sessions: str
    orders: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Inputs:
        ns = settings.training.features_namespace
        return cls(f"{ns}.{ACTIVITY}", f"{ns}.{SESSIONS}", settings.training.labels_table)

    def all(self) -> tuple[str, str, str]:
        return (self.activity, self.sessions, self.orders)


@dataclass
class Dataset:
    frame: pd.DataFrame  # one row per (user_id, t): FEATURES + LABEL
    snapshots: dict[str, int]
    split_at: pd.Timestamp
    validation_from: pd.Timestamp
    digest: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def train(self) -> pd.DataFrame:
        return self.frame[self.frame["t"] < self.split_at]

    @property
    def validation(self) -> pd.DataFrame:
        return self.frame[self.frame["t"] >= self.validation_from]


def pin(settings: Settings, inputs: Inputs) -> dict[str, int]:
    """The current snapshot id of every input table."""
    pinned = {}
    for ident in inputs.all():
        snap = load(settings, ident).current_snapshot()
        if snap is None:
            raise DatasetError(
                f"{ident} has no snapshot yet: run the streaming jobs (features, cdc_mirror) first"
            )
        pinned[ident] = snap.snapshot_id
    return pinned


def read(
    settings: Settings, ident: str, snapshot_id: int, columns: tuple[str, ...]
) -> pd.DataFrame:
    """``columns`` of ``ident`` exactly as of ``snapshot_id``."""
    table = load(settings, ident)
    if table.snapshot_by_id(snapshot_id) is None:
        raise DatasetError(
            f"snapshot {snapshot_id} of {ident} no longer exists (expired without a tag?)"
        )
    # Streamed file by file (lower peak memory than to_arrow's concatenation).
    scan = table.scan(snapshot_id=snapshot_id, selected_fields=columns)
    return scan.to_arrow_batch_reader().read_all().to_pandas()


def digest(frame: pd.DataFrame) -> str:
    """SHA-256 over columns, dtypes and values (row order as given)."""
    h = hashlib.sha256()
    h.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _utc(series: pd.Series) -> pd.Series:
    """UTC timestamps at one resolution (Arrow gives microseconds, pandas defaults to ns)."""
    return pd.to_datetime(series, utc=True).dt.as_unit("ns")


def samples(activity: pd.DataFrame, delay: pd.Timedelta, lookback: pd.Timedelta) -> pd.DataFrame:
    """Per (user, t = a window's availability): recent and cumulative activity, as of t."""
    a = activity.copy()
    a["t"] = _utc(a["window_end"]) + delay
    a["cart_value"] = a["cart_value"].astype(float)
    a = a.sort_values(["user_id", "t", "window_start"]).reset_index(drop=True)
    a["active_minutes"] = 1
    rolled = (
        a.set_index("t")
        .groupby("user_id")[[*COUNTS, "cart_value", "active_minutes", "distinct_products"]]
        .rolling(lookback, closed="right")
        .agg(
            {
                **dict.fromkeys(COUNTS, "sum"),
                "cart_value": "sum",
                "active_minutes": "sum",
                "distinct_products": "max",
            }
        )
        .reset_index()
    )
    rolled.columns = [
        "user_id",
        "t",
        *(f"{c}_recent" for c in COUNTS),
        "cart_value_recent",
        "active_minutes_recent",
        "distinct_products_max_recent",
    ]
    totals = a.groupby("user_id")[[*COUNTS, "active_minutes"]].cumsum()
    totals.columns = [*(f"{c}_total" for c in COUNTS), "active_minutes_total"]
    out = pd.concat([rolled, totals.reset_index(drop=True)], axis=1)
    # How often the user shows up: active minutes per hour since first seen (>= 1 h).
    seen_h = (a["t"] - a.groupby("user_id")["t"].transform("min")).dt.total_seconds() / 3600
    out["visits_per_hour"] = out["active_minutes_total"] / seen_h.clip(lower=1.0).to_numpy()
    out["minutes_since_previous_activity"] = (
        a.groupby("user_id")["t"].diff().dt.total_seconds().div(60).fillna(-1.0)
    )
    out["net_cart_recent"] = out["cart_adds_recent"] - out["cart_removes_recent"]
    short = (
        a.set_index("t")
        .groupby("user_id")[["events", "cart_adds", "checkouts"]]
        .rolling(pd.Timedelta(minutes=5), closed="right")
        .sum()
        .reset_index(drop=True)
    )
    for c in ("events", "cart_adds", "checkouts"):
        out[f"{c}_5m"] = short[c].to_numpy()
    for c in ("events", "cart_adds", "checkouts"):
        out[f"{c}_last_window"] = a[c].to_numpy()
    for seg in SEGMENTS:
        out[f"segment_{seg}"] = (a["segment"] == seg).astype("int8")
    # Several windows can become available at the same t: keep the last (all rows in).
    return out.drop_duplicates(["user_id", "t"], keep="last").reset_index(drop=True)


def session_history(sessions: pd.DataFrame, delay: pd.Timedelta) -> pd.DataFrame:
    """Per user, cumulative session stats as of each session's availability."""
    s = sessions.copy()
    s["available_at"] = _utc(s["session_end"]) + delay
    s = s.sort_values(["user_id", "available_at"]).reset_index(drop=True)
    g = s.groupby("user_id")
    s["sessions_done"] = g.cumcount() + 1
    s["sessions_converted"] = g["converted"].cumsum()
    s["session_events_mean"] = g["events"].cumsum() / s["sessions_done"]
    return s[
        ["user_id", "available_at", "sessions_done", "sessions_converted", "session_events_mean"]
    ]


def label(frame: pd.DataFrame, orders: pd.DataFrame, horizon: pd.Timedelta) -> pd.Series:
    """1 when the user's next order after t (strictly) is created within the horizon."""
    o = orders.rename(columns={"customer_id": "user_id"})[["user_id", "created_at"]].copy()
    o["created_at"] = _utc(o["created_at"])
    o = o.dropna().sort_values("created_at")
    left = frame[["user_id", "t"]].reset_index().sort_values("t")
    nxt = (
        pd.merge_asof(
            left,
            o,
            left_on="t",
            right_on="created_at",
            by="user_id",
            direction="forward",
            allow_exact_matches=False,
        )
        .set_index("index")
        .sort_index()
    )
    return ((nxt["created_at"] - nxt["t"]) <= horizon).astype("int8")


def build(settings: Settings, inputs: Inputs, snapshots: dict[str, int]) -> Dataset:
    """The point-in-time training set of ``inputs`` at ``snapshots``."""
    cfg = settings.training
    delay = pd.Timedelta(settings.features.watermark_delay)
    horizon = pd.Timedelta(cfg.horizon)
    activity, sessions, orders = read_inputs(settings, inputs, snapshots)
    frame = samples(activity, delay, pd.Timedelta(cfg.lookback))
    frame = draw_times(frame, orders, horizon, cfg.samples_per_user, cfg.seed)
    frame = with_session_history(frame, session_history(sessions, delay))
    frame[LABEL] = label(frame, orders, horizon)
    frame = frame[["user_id", "t", *FEATURES, LABEL]]
    for col in FEATURES:
        frame[col] = frame[col].astype(float)
    frame = frame.sort_values(["t", "user_id"]).reset_index(drop=True)
    if len(frame) < 50 or frame[LABEL].nunique() < 2:
        raise DatasetError(
            f"{len(frame)} samples with labels {sorted(frame[LABEL].unique())}: too little to "
            "train on; let the simulator run longer"
        )
    times = frame["t"].sort_values()
    split_at = times.iloc[int(len(times) * (1 - cfg.validation_fraction))]
    data = Dataset(
        frame=frame,
        snapshots=dict(snapshots),
        split_at=split_at,
        validation_from=split_at + horizon,
        params=params(settings),
    )
    data.digest = digest(frame)
    if data.validation.empty or data.validation[LABEL].nunique() < 2:
        raise DatasetError("the validation period has a single class: let the simulator run longer")
    return data


def read_inputs(
    settings: Settings, inputs: Inputs, snapshots: dict[str, int]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(activity windows, sessions, created orders) as of ``snapshots``.

    Raises:
        DatasetError: No activity or no orders to learn from.
    """
    activity_columns = (
        "user_id",
        "window_start",
        "window_end",
        *COUNTS,
        "distinct_products",
        "cart_value",
        "segment",
    )
    activity = read(settings, inputs.activity, snapshots[inputs.activity], activity_columns)
    sessions = read(
        settings,
        inputs.sessions,
        snapshots[inputs.sessions],
        ("user_id", "session_end", "events", "converted"),
    )
    orders = read(
        settings, inputs.orders, snapshots[inputs.orders], ("op", "customer_id", "created_at")
    )
    orders = orders[orders["op"].isin(["c", "r"])]
    if activity.empty or orders.empty:
        raise DatasetError(
            f"nothing to learn from: {len(activity)} activity windows, {len(orders)} orders "
            f"({inputs.activity} at {snapshots[inputs.activity]}, "
            f"{inputs.orders} at {snapshots[inputs.orders]})"
        )
    return activity, sessions, orders


def draw_times(
    frame: pd.DataFrame, orders: pd.DataFrame, horizon: pd.Timedelta, per_user: int, seed: int
) -> pd.DataFrame:
    """At most ``per_user`` times t per user, drawn with ``seed``, among the times whose
    whole label horizon both inputs cover; sorted by (t, user)."""
    covered = min(_utc(orders["created_at"]).max(), frame["t"].max()) - horizon
    frame = frame[frame["t"] <= covered]
    # A stable order first, so the same seed draws the same rows.
    frame = frame.sort_values(["user_id", "t"]).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    keys = rng.random(len(frame))
    frame = frame.assign(_k=keys)
    frame = frame[frame.groupby("user_id")["_k"].rank(method="first") <= per_user]
    return frame.drop(columns="_k").sort_values(["t", "user_id"]).reset_index(drop=True)


def with_session_history(frame: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with each user's session stats as of t, and their history as rates."""
    frame = pd.merge_asof(
        frame,
        history.sort_values("available_at"),
        left_on="t",
        right_on="available_at",
        by="user_id",
        direction="backward",
    ).drop(columns="available_at")
    for col in ("sessions_done", "sessions_converted", "session_events_mean"):
        frame[col] = frame[col].fillna(0).astype(float)
    # The user's history as rates (a latent propensity shows in them).
    frame["session_conversion_rate"] = frame["sessions_converted"] / frame["sessions_done"].clip(1)
    events = frame["events_total"].clip(1)
    frame["cart_add_rate_total"] = frame["cart_adds_total"] / events
    frame["checkout_rate_total"] = frame["checkouts_total"] / events
    return frame


def params(settings: Settings) -> dict[str, Any]:
    """What the dataset depends on besides its snapshots, as logged with a run.

    Durations are logged as Spark interval strings (``"1800 seconds"``), which
    :func:`kappa.durations.parse` reads back.
    """
    cfg = settings.training
    return {
        "horizon": to_spark(cfg.horizon),
        "lookback": to_spark(cfg.lookback),
        "samples_per_user": cfg.samples_per_user,
        "validation_fraction": cfg.validation_fraction,
        "seed": cfg.seed,
        "watermark_delay": to_spark(settings.features.watermark_delay),
    }
