"""The local stack as a whole: start in dependency order, stop in reverse, report status."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from infra import jars
from infra.process import Service, java_major
from infra.services.connect import Connect
from infra.services.kafka import Kafka
from infra.services.mlflow import Mlflow
from infra.services.objectstore import ObjectStore
from infra.services.postgres import Postgres, find_bin_dir
from infra.services.registry import Registry
from infra.services.spark import cluster
from kappa.exceptions import KappaError, ToolMissingError, UnknownServiceError
from kappa.settings import Settings

Report = Callable[[str], None]

SERVICE_ORDER: tuple[type[Service], ...] = (Postgres, Kafka, Registry, Connect, Mlflow)
"""Dependency order: the registry and MLflow store in PostgreSQL, Connect needs Kafka."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    endpoint: str
    healthy: bool
    version: str | None
    managed: bool

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def services(settings: Settings) -> list[Service]:
    """Every service in start order; Kafka once per node (``kafka``, ``kafka-2``, ...);
    the object store (s3proxy) when on (``kappa up --object-store``) or running; last the
    Spark standalone cluster when asked for (``KAPPA_SPARK_CLUSTER``) or running."""
    out: list[Service] = []
    for cls in SERVICE_ORDER:
        if cls is Mlflow:  # MLflow's artifacts may live on the object store
            store = ObjectStore(settings)
            if settings.object_store or store.pid() is not None:
                out.append(store)
        if cls is Kafka and settings.kafka.managed:
            out += [Kafka(settings, node) for node in range(1, settings.kafka.nodes + 1)]
        else:
            out.append(cls(settings))
    spark = cluster(settings)
    if settings.spark.cluster or any(svc.pid() is not None for svc in spark):
        out += spark
    return out


def service(settings: Settings, name: str) -> Service:
    every = services(settings)
    for svc in every:
        if svc.name == name:
            return svc
    known = ", ".join(svc.name for svc in every)
    raise UnknownServiceError(f"unknown service '{name}'; known services: {known}")


def check_tools(settings: Settings) -> None:
    """Java 17+ and PostgreSQL must be installed (Maven only when jars are missing)."""
    java = shutil.which(settings.stack.java)
    if java is None:
        raise ToolMissingError(
            f"Java ('{settings.stack.java}') is not installed; run `make install` or "
            "`apt-get install -y openjdk-17-jre-headless` (or set KAPPA_JAVA)."
        )
    if java_major(java) < 17:
        raise ToolMissingError(f"Java 17 or newer is required at {java}; set KAPPA_JAVA.")
    if settings.postgres.managed:
        find_bin_dir(settings.postgres.bin_dir)


def up(settings: Settings, report: Report = print) -> bool:
    """Start what is not running, in order, waiting for each to be healthy.

    Returns False when everything was already running (nothing done).
    """
    check_tools(settings)
    resolved = jars.ensure_jars(settings.stack, jars.profiles(settings.object_store))
    if resolved:
        report(f"resolved jars from Maven Central: {', '.join(resolved)}")
    stack = services(settings)
    to_start = [s for s in stack if s.managed and s.pid() is None]
    if not to_start and all(s.healthy() for s in stack):
        report("the stack is already running; nothing to do (see `kappa status`)")
        return False
    # Check every port before starting anything, so a conflict leaves nothing half-started.
    for svc in to_start:
        svc.check_ports()
    if settings.kafka.managed:
        Kafka(settings).cluster_id()  # refuses a node count other than the cluster's
    started: list[Service] = []  # started, not yet healthy: the nodes of a quorum
    for svc in stack:
        if svc in to_start:
            report(f"starting {svc.name} ...")
            svc.prepare()
            svc.start()
            started.append(svc)
            if svc.start_with_next:
                continue
        for waiting in started:
            try:
                waiting.wait_healthy()
            except KappaError:
                for other in started:
                    other.stop()
                raise
            waiting.after_start()
            report(f"{waiting.name} healthy at {waiting.endpoint}")
        if svc not in started:
            svc.wait_healthy()
            svc.after_start()
            how = "already running" if svc.managed else "external"
            report(f"{svc.name} {how}, healthy at {svc.endpoint}")
        started = []
    return True


def down(settings: Settings, purge: bool = False, report: Report = print) -> None:
    """Stop our processes: the users of Kafka and PostgreSQL, then the Kafka nodes, then
    PostgreSQL, each group at once; with ``purge`` delete all state but the jars.

    The Kafka nodes get their signal together: stopped one by one, the last of three
    waited for a quorum that the first two had taken away (90 s, then SIGKILL)."""
    every = list(reversed(services(settings)))
    kafka: list[Service] = [svc for svc in every if isinstance(svc, Kafka)]
    postgres: list[Service] = [svc for svc in every if isinstance(svc, Postgres)]
    users = [svc for svc in every if svc not in kafka and svc not in postgres]
    for group in (users, kafka, postgres):
        _stop_together(group, report)
    if purge:
        state = settings.stack.state_dir
        for child in state.iterdir() if state.exists() else []:
            if child == settings.stack.jars_dir:
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        pg = Postgres(settings)
        if pg.cluster_dir.exists():
            shutil.rmtree(pg.cluster_dir)
        report(f"purged state in {state} (kept downloaded jars)")


def _stop_together(group: list[Service], report: Report) -> None:
    if not group:
        return
    with ThreadPoolExecutor(max_workers=len(group)) as pool:
        for svc, stopped in zip(group, pool.map(lambda svc: svc.stop(), group), strict=True):
            if stopped:
                report(f"stopped {svc.name}")


def status(settings: Settings) -> list[ServiceStatus]:
    rows = []
    for svc in services(settings):
        healthy = svc.healthy()
        rows.append(
            ServiceStatus(
                name=svc.name,
                pid=svc.pid() if svc.managed else None,
                endpoint=svc.endpoint,
                healthy=healthy,
                version=svc.version() if healthy else None,
                managed=svc.managed,
            )
        )
    return rows
