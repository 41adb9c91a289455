"""The operator's view now: services, connectors, stream queries, lake tables, quarantine.

Everything is read from what the system already records: the services' health
endpoints, Connect's REST API, each streaming query's ``progress.jsonl`` and Iceberg
metadata (snapshot summaries and manifest column bounds; no data file is opened
except the quarantine tables' ``reason`` column).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from kappa import names
from kappa.settings import Settings


def services(settings: Settings) -> list[dict[str, Any]]:
    """Each service of the stack: name, pid, endpoint, healthy, version."""
    from infra import stack

    return [r.as_dict() for r in stack.status(settings)]


def connectors(settings: Settings) -> list[dict[str, Any]]:
    """Each Debezium connector with its state and its tasks' states."""
    from connect import apply

    return [s.as_dict() for s in apply.status(settings)]


NEEDS_ATTENTION = ("backoff", "gave_up", "dead", "unsupervised")
"""Supervisor states listed even for a job that never reported a batch."""


def queries(settings: Settings) -> list[dict[str, Any]]:
    """Every query of every job instance that has run here (one never started is left out)."""
    from stream_jobs import launcher

    rows = []
    for instance, name in launcher.instances(settings).items():
        for row in launcher.statuses(settings, name, instance):
            if (
                row.get("running")
                or row.get("batch_id") is not None
                or row["supervisor"].get("status") in NEEDS_ATTENTION
            ):
                rows.append({"job": name, "instance": instance, **row})
    return rows


def tables(settings: Settings) -> list[dict[str, Any]]:
    """Per lake table: live rows, current snapshot, commit time and freshness."""
    from iceberg import admin

    now = datetime.now(UTC)
    return admin.list_tables(
        settings, names.LAKE_NAMESPACES, more=lambda t: admin.freshness(t, now)
    )


def quarantine(settings: Settings) -> list[dict[str, Any]]:
    """Records in each quarantine table, per reason."""
    from pyiceberg.exceptions import NoSuchNamespaceError

    from kappa.catalog import load_catalog

    catalog = load_catalog(settings)
    out: list[dict[str, Any]] = []
    try:
        idents = catalog.list_tables(names.QUARANTINE)
    except NoSuchNamespaceError:  # a new stack: no job has created its tables yet
        return out
    for ident in sorted(idents):
        table = catalog.load_table(ident)
        if table.current_snapshot() is None:
            continue
        reasons = table.scan(selected_fields=("reason",)).to_arrow().column("reason").to_pylist()
        for reason, count in sorted(Counter(reasons).items()):
            out.append({"table": ".".join(ident), "reason": reason, "count": count})
    return out


def status(settings: Settings, *, only_services: bool = False) -> dict[str, Any]:
    """The operator's view; the lake and streams only when every service answers.

    Returns:
        ``{"services", "connectors", "queries", "tables", "quarantine"}``; only
        ``services`` (and ``skipped``, saying why) when a service is down or when
        ``only_services`` is set.
    """
    view: dict[str, Any] = {"services": services(settings)}
    if only_services:
        return view
    if not all(s["healthy"] for s in view["services"]):
        view["skipped"] = "some services are down: start them with `kappa up`"
        return view
    view["connectors"] = connectors(settings)
    view["queries"] = queries(settings)
    view["tables"] = tables(settings)
    view["quarantine"] = quarantine(settings)
    served = online(settings)
    if served is not None:
        view["online"] = served
    return view


def online(settings: Settings) -> dict[str, Any] | None:
    """The online view's worker and read replica, once started here (else None)."""
    from stream_jobs import launcher
    from stream_jobs.online import launcher as view

    if not launcher.job_dir(settings, view.NAME).exists():
        return None
    return view.status(settings)


DOWN = ("gave_up", "dead")
"""Supervisor states of a job that no longer runs although nobody stopped it."""


def healthy(view: dict[str, Any]) -> bool:
    """Whether every service and connector in ``view`` (from :func:`status`) is healthy and
    no job's supervisor gave up (or died)."""
    supervised = [q["supervisor"] for q in view.get("queries", [])]
    if "online" in view:
        supervised.append(view["online"]["supervisor"])
        supervised.append(view["online"].get("replica", {}).get("supervisor") or {})
    jobs_up = all(s.get("status") not in DOWN for s in supervised)
    return (
        jobs_up
        and all(r["healthy"] for r in view["services"])
        and all(c["healthy"] for c in view.get("connectors", []))
    )
