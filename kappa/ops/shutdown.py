"""``kappa down``: what kappa started, users of the services first, then the services.

A streaming job or the online view left running over a stopped stack would only retry
against dead ports until stopped by hand; stopping them first also lets each driver
finish its batch and checkpoint while Kafka and the catalog are still there.
"""

from __future__ import annotations

from collections.abc import Callable

from kappa.settings import Settings

Report = Callable[[str], None]


def down(settings: Settings, purge: bool = False, report: Report = print) -> None:
    """Stop the online view, every streaming job instance and the standalone Airflow
    started from this state folder, then the services (``purge``: and delete the state)."""
    from infra import stack
    from kappa.ops import airflow
    from stream_jobs import launcher
    from stream_jobs.online import launcher as online

    if online.stop(settings):
        report("stopped the online view (worker and read replica)")
    for instance in launcher.stop_many(settings, list(launcher.instances(settings))):
        report(f"stopped stream job {instance}")
    if airflow.down(settings):
        report("stopped Airflow")
    stack.down(settings, purge=purge, report=report)
