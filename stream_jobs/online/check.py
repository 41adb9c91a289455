"""Training/serving skew: the online view's closed windows against the Iceberg tables.

For each feature set, the closed windows the view keeps (``GET /windows/{name}``: those
of the last ``KAPPA_ONLINE_RETENTION`` before its watermark) are matched by key with the
rows the live Spark job wrote to ``features.<name>``, over the windows both have closed
(the offline job's watermark is its query's last progress). Every column of the
definition (key, bounds, aggregates; not the enrichment, which the view does not look
up, nor ``computed_at``) must be equal.

A window whose values differ, or which only one side has, is **skew** — unless the view
marked it: an event of it arrived at the watermark (``late`` on the view's side, or
``near`` it), where the two engines, moving their watermarks at different moments, may
each have decided it the other way. Those are reported apart as ``at_watermark``.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests

from kappa.settings import Settings
from stream_jobs.feature_sets import DEFINITIONS
from stream_jobs.online.state import MICROS, instant
from stream_jobs.progress import last_progress

CHECKED = ("user_activity_1m", "user_activity_1h")
COUNTS = ("compared", "identical", "differing", "at_watermark", "only_online", "only_offline")
EXAMPLES = 5


def online_windows(
    base_url: str, name: str, timeout_s: float = 120.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The view's clocks and its closed windows of ``name``."""
    answer = requests.get(f"{base_url}/windows/{name}", timeout=timeout_s)
    answer.raise_for_status()
    lines = answer.content.splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:] if line]


def offline_watermark(settings: Settings, name: str, instance: str = "features") -> datetime | None:
    """The event time up to which the live job has written ``name``'s windows."""
    query = f"{instance}-{'windows' if DEFINITIONS[name].windows is not None else name}"
    progress = last_progress(settings, query) or {}
    mark = (progress.get("eventTime") or {}).get("watermark")
    return datetime.fromisoformat(mark) if mark else None


def _columns(name: str) -> dict[str, str]:
    """Compared column -> its Iceberg type."""
    definition = DEFINITIONS[name]
    enriched = {c.name for c in definition.enrich.columns} if definition.enrich else set()
    return {
        c.name: c.type
        for c in definition.columns()
        if c.name not in enriched and c.name != "computed_at"
    }


def _normal(value: Any, kind: str) -> Any:
    """One value as both sides can be compared: timestamps as epoch micros, decimals exact."""
    if value is None:
        return None
    if kind == "timestamptz":
        at = datetime.fromisoformat(value) if isinstance(value, str) else value
        return (at - instant(0)) // MICROS
    if kind.startswith("decimal"):
        return Decimal(str(value))
    return value


def _offline(
    settings: Settings, name: str, namespace: str, since: datetime
) -> list[dict[str, Any]]:
    from iceberg.admin import load

    end = DEFINITIONS[name].keys_end[1]
    table = load(settings, f"{namespace}.{name}")
    scan = table.scan(
        row_filter=f"{end} > '{since.isoformat()}'",
        selected_fields=tuple(_columns(name)),
    )
    return list(scan.to_arrow().to_pylist())


def compare(
    name: str,
    online: list[dict[str, Any]],
    offline: list[dict[str, Any]],
    since: datetime,
    until: datetime,
) -> dict[str, Any]:
    """Match ``online`` and ``offline`` windows of ``name`` ending after ``since`` and at or
    before ``until``; count identical, skewed and at-the-watermark ones."""
    columns = _columns(name)
    key, start = DEFINITIONS[name].keys
    end = DEFINITIONS[name].keys_end[1]
    lo, hi = _normal(since, "timestamptz"), _normal(until, "timestamptz")

    def keyed(rows: list[dict[str, Any]], marks: bool) -> dict[tuple[Any, int], dict[str, Any]]:
        out = {}
        for row in rows:
            normal = {c: _normal(row.get(c), t) for c, t in columns.items()}
            if not lo < normal[end] <= hi:
                continue  # (a window of only late events stays: marked, it explains itself)
            if marks:
                normal["_marked"] = bool(row.get("late") or row.get("near"))
            out[(normal[key], normal[start])] = normal
        return out

    mine, theirs = keyed(online, True), keyed(offline, False)
    result: dict[str, Any] = {
        "compared": 0,
        "identical": 0,
        "differing": 0,
        "at_watermark": 0,
        "only_online": 0,
        "only_offline": 0,
        "examples": [],
    }
    for k in sorted(set(mine) | set(theirs), key=lambda k: (k[1], k[0])):
        got, want = mine.get(k), theirs.get(k)
        if got is not None and want is not None:
            result["compared"] += 1
            diff = {c: (got[c], want[c]) for c in columns if got[c] != want[c]}
            if not diff:
                result["identical"] += 1
                continue
        else:
            diff = {"present": ("online" if got else "-", "offline" if want else "-")}
        if got is not None and got["_marked"]:
            result["at_watermark"] += 1
            continue
        kind = (
            "differing"
            if got is not None and want is not None
            else ("only_online" if got is not None else "only_offline")
        )
        result[kind] += 1
        if len(result["examples"]) < EXAMPLES:
            result["examples"].append({"kind": kind, key: k[0], start: instant(k[1]), "diff": diff})
    result["skew"] = result["differing"] + result["only_online"] + result["only_offline"]
    return result


def check(
    settings: Settings,
    base_url: str,
    names: tuple[str, ...] = CHECKED,
    namespace: str | None = None,
    instance: str = "features",
) -> dict[str, Any]:
    """Every set of ``names`` compared (see :func:`compare`); ``skew`` is their total."""
    namespace = namespace or settings.features.namespace
    out: dict[str, Any] = {"feature_sets": {}}
    for name in names:
        clocks, online = online_windows(base_url, name)
        since = instant(int(clocks["kept_from"]))
        offline = _offline(settings, name, namespace, since)
        written = offline_watermark(settings, name, instance)
        if written is None:  # no progress of the live job here: as far as its rows go
            end = DEFINITIONS[name].keys_end[1]
            written = max((r[end] for r in offline), default=since)
        until = min(instant(int(clocks["watermark"])), written)
        report = compare(name, online, offline, since, until)
        out["feature_sets"][name] = {"from": since, "to": until, **report}
    out["skew"] = sum(r["skew"] for r in out["feature_sets"].values())
    out["compared"] = sum(r["compared"] for r in out["feature_sets"].values())
    return out
