"""The one Iceberg catalog, as PyIceberg and Spark each see it.

Both engines use the same JDBC tables in PostgreSQL (``iceberg_tables``,
``iceberg_namespace_properties``) under the same catalog name, so a table
Spark writes is a table PyIceberg reads, and the reverse.
"""

from __future__ import annotations

from typing import Any

from kappa import objectstore, retry
from kappa.exceptions import DatabaseUnavailableError
from kappa.settings import Settings


def warehouse_location(settings: Settings) -> str:
    """The warehouse root: the configured URI, ``s3://<bucket>/warehouse`` with the object
    store on, or ``file://<state>/warehouse``."""
    if settings.catalog.warehouse:
        return settings.catalog.warehouse
    if on_store := settings.default_location("warehouse"):
        return on_store
    path = settings.stack.state_dir / "warehouse"
    path.mkdir(parents=True, exist_ok=True)
    return f"file://{path}"


def load_catalog(settings: Settings) -> Any:
    """The PyIceberg ``SqlCatalog`` on kappa's PostgreSQL (or on ``KAPPA_CATALOG_URI``)."""
    from pyiceberg.catalog.sql import SqlCatalog

    pg = settings.postgres
    props: dict[str, str] = {
        "uri": settings.catalog.uri or pg.sqlalchemy_url(pg.catalog_db),
        "warehouse": warehouse_location(settings),
        "init_catalog_tables": "true",
        # A PostgreSQL restart closes every pooled connection: test one before use.
        "pool_pre_ping": "true",
    }
    if objectstore.on_store(props["warehouse"]) or settings.object_store:
        props.update(objectstore.pyiceberg_props(settings))
        objectstore.export_env(settings)  # PyArrow's S3 client reads its checksum policy there
    return retry.call(
        lambda: SqlCatalog(settings.catalog.name, **props),
        retry_on=_unreachable_database,
        attempts=3,
        first_wait_s=1.0,
        fail=lambda exc: DatabaseUnavailableError(
            f"the Iceberg catalog's database is not reachable ({_first_line(exc)}); "
            "run `kappa up` or set KAPPA_POSTGRES_HOST / KAPPA_POSTGRES_PORT (or KAPPA_CATALOG_URI)"
        ),
        name="Iceberg catalog",
    )


def _unreachable_database(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def spark_catalog_conf(settings: Settings) -> dict[str, str]:
    """Spark SQL settings that register the same catalog as an Iceberg ``SparkCatalog``."""
    pg = settings.postgres
    prefix = f"spark.sql.catalog.{settings.catalog.name}"
    conf = {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "jdbc",
        f"{prefix}.uri": pg.jdbc_url(pg.catalog_db),
        f"{prefix}.jdbc.user": pg.user,
        f"{prefix}.jdbc.password": pg.password.get_secret_value(),
        # V1 adds the iceberg_type column (views); PyIceberg's SqlCatalog tolerates it.
        f"{prefix}.jdbc.schema-version": "V1",
        f"{prefix}.warehouse": warehouse_location(settings),
        "spark.sql.defaultCatalog": settings.catalog.name,
        # Streaming writers and readers share a session; a cached table would go stale.
        f"{prefix}.cache-enabled": "false",
        # A PostgreSQL restart ends pooled connections with 57P01 (admin shutdown), 57P02
        # (crash shutdown) or 57P03 (cannot connect now): reconnect and retry, as for 08*.
        f"{prefix}.retryable_status_codes": "57P01,57P02,57P03",
    }
    # On s3://, Iceberg's default HadoopFileIO writes through Hadoop's S3A, configured once
    # for the tables and the checkpoints (kappa.objectstore.hadoop_conf).
    return conf
