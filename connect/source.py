"""The PostgreSQL side of CDC: the source tables' DDL, the publication and grants a
connector reads through, and slot/publication cleanup."""

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


POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"


def prepare_capture(settings: Settings, config: dict[str, str]) -> list[str]:
    """What a Debezium PostgreSQL connector may read, set up by the tables' owner.

    With ``publication.autocreate.mode=disabled`` Debezium's role needs no ownership
    and no CREATE: kappa (connected as the owner, ``KAPPA_POSTGRES_USER``) creates the
    publication over exactly ``table.include.list`` (or sets its tables to that list),
    and grants the connector's ``database.user`` CONNECT, USAGE on the schemas and
    SELECT on those tables (the snapshot), nothing more. Idempotent.

    Returns:
        The captured tables (empty for another connector or another autocreate mode).

    Raises:
        KappaError: A captured table does not exist yet (apply the source DDL first).
    """
    if config.get("connector.class") != POSTGRES_CONNECTOR:
        return []
    if config.get("publication.autocreate.mode") != "disabled":
        return []
    from psycopg2 import sql

    tables = [t.strip() for t in config.get("table.include.list", "").split(",") if t.strip()]
    publication, role = config["publication.name"], config["database.user"]
    conn = _connect(settings, config["database.dbname"])
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(t) FROM unnest(%s::text[]) AS t", (tables,))
            missing = [t for t, (found,) in zip(tables, cur.fetchall(), strict=True) if not found]
            if missing:
                raise KappaError(
                    f"captured table(s) {', '.join(missing)} do not exist in database"
                    f" '{config['database.dbname']}'; create them (the simulator or"
                    " `kappa connect apply` does for the shop) before applying the connector"
                )
            idents = [sql.Identifier(*t.split(".", 1)) for t in tables]
            listed = sql.SQL(", ").join(idents)
            cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
            verb = (
                "ALTER PUBLICATION {} SET TABLE {}"
                if cur.fetchone()
                else "CREATE PUBLICATION {} FOR TABLE {}"
            )
            cur.execute(sql.SQL(verb).format(sql.Identifier(publication), listed))
            if role != settings.postgres.user:
                database = sql.Identifier(config["database.dbname"])
                who = sql.Identifier(role)
                cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, who))
                for schema in sorted({t.split(".", 1)[0] for t in tables}):
                    grant = sql.SQL("GRANT USAGE ON SCHEMA {} TO {}")
                    cur.execute(grant.format(sql.Identifier(schema), who))
                cur.execute(sql.SQL("GRANT SELECT ON TABLE {} TO {}").format(listed, who))
    finally:
        conn.close()
    return tables


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
