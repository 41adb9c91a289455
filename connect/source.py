"""The PostgreSQL side of CDC: the source tables' DDL, and slot/publication cleanup."""

from __future__ import annotations

import time
from typing import Any

from kappa import retry
from kappa.exceptions import DatabaseUnavailableError, KappaError
from kappa.settings import Settings


def _connect(settings: Settings, database: str) -> Any:
    import psycopg2

    try:
        conn = psycopg2.connect(settings.postgres.dsn(database), connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"PostgreSQL database '{database}' not reachable at {settings.postgres.host}:"
            f"{settings.postgres.port} ({str(exc).strip()}); run `kappa up`"
        ) from None
    conn.autocommit = True
    return conn


def prepare_source(settings: Settings, database: str, ddl: str, attempts: int = 5) -> None:
    """Apply the source tables' idempotent DDL before a connector captures them.

    The simulator applies the same DDL; two concurrent ``CREATE TABLE IF NOT
    EXISTS`` can still collide in the catalog, so a collision is retried.

    Args:
        settings: kappa settings (PostgreSQL endpoint and credentials).
        database: The source database, e.g. ``settings.postgres.shop_db``.
        ddl: The DDL, e.g. ``schemas.oltp.shop_ddl()``.
        attempts: How often a catalog collision is retried.
    """
    import psycopg2

    def once() -> None:
        conn = _connect(settings, database)
        try:
            with conn.cursor() as cur:
                cur.execute(ddl)
        finally:
            conn.close()

    collided = (psycopg2.errors.UniqueViolation, psycopg2.errors.DeadlockDetected)
    retry.call(
        once,
        retry_on=lambda exc: isinstance(exc, collided),
        attempts=attempts,
        first_wait_s=0.2,
        name="source DDL",
    )


def drop_replication(
    settings: Settings,
    database: str,
    slot: str,
    publication: str | None = None,
    timeout_s: float = 30.0,
) -> bool:
    """Drop a logical replication slot (and publication) once its connector let go of it.

    A slot nobody reads makes PostgreSQL keep WAL forever, so a deleted connector's
    slot should go with it.

    Returns:
        True when a slot was dropped, False when there was none.
    """
    conn = _connect(settings, database)
    deadline = time.monotonic() + timeout_s
    try:
        with conn.cursor() as cur:
            if publication:
                cur.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')
            while True:
                cur.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                row = cur.fetchone()
                if row is None:
                    return False
                if not row[0]:
                    cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    return True
                if time.monotonic() > deadline:
                    raise KappaError(
                        f"replication slot '{slot}' still in use after {timeout_s:.0f}s; "
                        "stop the connector using it, then drop it with pg_drop_replication_slot"
                    )
                time.sleep(0.5)
    finally:
        conn.close()
