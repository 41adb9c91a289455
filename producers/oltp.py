"""The shop's OLTP writes: the simulator's customers, products and orders into PostgreSQL.

Tables come from ``schemas/oltp/shop.sql`` (applied, never redefined here), in the
``shop`` database's ``public`` schema by default or in any schema given, so tests
and experiments can keep their rows apart. Inserts are upserts, so replaying a seed
into the same schema rewrites the same rows instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kappa import retry
from kappa.exceptions import DatabaseUnavailableError
from kappa.settings import PostgresSettings
from schemas.oltp import shop_ddl

_UPSERTS = {
    "customer": (
        "INSERT INTO customers (customer_id, email, name, segment, country, signup_at, updated_at)"
        " VALUES %s ON CONFLICT (customer_id) DO UPDATE SET email = EXCLUDED.email,"
        " name = EXCLUDED.name, segment = EXCLUDED.segment, country = EXCLUDED.country,"
        " signup_at = EXCLUDED.signup_at, updated_at = EXCLUDED.updated_at"
    ),
    "product": (
        "INSERT INTO products (product_id, name, category, price, updated_at) VALUES %s"
        " ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name,"
        " category = EXCLUDED.category, price = EXCLUDED.price, updated_at = EXCLUDED.updated_at"
    ),
    "order": (
        "INSERT INTO orders (order_id, customer_id, session_id, status, item_count, total,"
        " created_at, updated_at) VALUES %s ON CONFLICT (order_id) DO UPDATE SET"
        " customer_id = EXCLUDED.customer_id, session_id = EXCLUDED.session_id,"
        " status = EXCLUDED.status, item_count = EXCLUDED.item_count, total = EXCLUDED.total,"
        " created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
    ),
}
_STATEMENTS = {
    "order_status": "UPDATE orders SET status = %s, updated_at = %s WHERE order_id = %s",
    "order_delete": "DELETE FROM orders WHERE order_id = %s",
}
_SUMMARY_KEYS = {
    "customer": "customers_written",
    "product": "products_written",
    "order": "orders_written",
    "order_status": "order_status_changes",
    "order_delete": "orders_deleted",
}


def _valid_schema(name: str) -> str:
    if not name.replace("_", "").isalnum() or name[0].isdigit():
        raise ValueError(f"PostgreSQL schema name {name!r} must be letters, digits and _")
    return name


class OltpWriter:
    """Applies the simulator's OLTP changes, in order, in batched transactions.

    Args:
        settings: Where PostgreSQL is.
        database: The database (default: the ``shop`` database).
        schema: The PostgreSQL schema holding the tables; created if missing.
        attempts: Connection attempts before giving up.
        backoff_s: First wait between attempts (doubles each time).
    """

    def __init__(
        self,
        settings: PostgresSettings,
        database: str | None = None,
        schema: str = "public",
        attempts: int = 5,
        backoff_s: float = 1.0,
    ) -> None:
        self.database = database or settings.shop_db
        self.schema = _valid_schema(schema)
        self.endpoint = f"{settings.host}:{settings.port}/{self.database}"
        self.counts = dict.fromkeys(_SUMMARY_KEYS.values(), 0)
        self.conn = self._connect(settings.dsn(self.database), attempts, backoff_s)
        with self.conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cur.execute(f'SET search_path TO "{self.schema}"')
            cur.execute(shop_ddl())
        self.conn.commit()

    def _connect(self, dsn: str, attempts: int, backoff_s: float) -> Any:
        import psycopg2

        def unreachable(exc: BaseException) -> DatabaseUnavailableError:
            return DatabaseUnavailableError(
                f"PostgreSQL not reachable at {self.endpoint} after {attempts} attempts"
                f" ({str(exc).strip()}); run `kappa up` or set KAPPA_POSTGRES_HOST /"
                " KAPPA_POSTGRES_PORT"
            )

        return retry.call(
            lambda: psycopg2.connect(dsn, connect_timeout=5),
            retry_on=lambda exc: isinstance(exc, psycopg2.OperationalError),
            attempts=attempts,
            first_wait_s=backoff_s,
            fail=unreachable,
            name="PostgreSQL connect",
        )

    def next_ids(self) -> tuple[int, int]:
        """The first order id and the first customer id that no existing row uses."""
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT (SELECT COALESCE(MAX(order_id), 0) + 1 FROM orders),"
                " (SELECT COALESCE(MAX(customer_id), 0) + 1 FROM customers)"
            )
            order_id, customer_id = cur.fetchone()
        self.conn.commit()
        return int(order_id), int(customer_id)

    def write(self, ops: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Apply ``ops`` (kind, row) in order, in one transaction."""
        from psycopg2.extras import execute_batch, execute_values

        if not ops:
            return
        with self.conn.cursor() as cur:
            for kind, rows in _runs(ops):
                if kind in _UPSERTS:
                    execute_values(cur, _UPSERTS[kind], _last_per_key(rows), page_size=1000)
                else:
                    execute_batch(cur, _STATEMENTS[kind], rows, page_size=1000)
                self.counts[_SUMMARY_KEYS[kind]] += len(rows)
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def _runs(ops: Sequence[tuple[str, tuple[Any, ...]]]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Consecutive ops of one kind, grouped; order between kinds is kept."""
    runs: list[tuple[str, list[tuple[Any, ...]]]] = []
    for kind, row in ops:
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(row)
        else:
            runs.append((kind, [row]))
    return runs


def _last_per_key(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """One row per primary key (the last): an upsert may not touch a row twice."""
    return list({row[0]: row for row in rows}.values())
