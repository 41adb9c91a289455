"""``spark-submit`` by hand: kappa's Spark settings where Spark looks for them.

``kappa up`` writes ``<state>/spark/conf/`` (``write``), a ``SPARK_CONF_DIR``:

- ``spark-defaults.conf``: the master and every setting the jobs run with
  (``kappa.spark.spark_conf``: jars, catalog, state store...), secrets aside;
- ``spark-env.sh``: what ``spark-submit`` sources first: this virtual environment's Python
  for the driver and the executors, the address to bind, and ``PGPASSFILE``;
- ``pgpass`` (mode 0600): the catalog's PostgreSQL password, which the JDBC driver reads
  from there when the catalog is given none. No password is in the other two files or on
  a command line.

So, with the virtual environment active::

    SPARK_CONF_DIR=.stack/spark/conf spark-submit stream_jobs/features.py --available-now

and on the standalone cluster (``kappa up --spark-cluster``; the job ships the project's
code to the executors itself, ``kappa.spark.get_spark``)::

    SPARK_CONF_DIR=.stack/spark/conf spark-submit --master spark://127.0.0.1:7077 \
        stream_jobs/features.py --available-now
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from kappa.settings import Settings
from kappa.spark import executor_conf, spark_conf, spark_env

SECRET_KEY_PARTS = ("password", "secret", "token")
"""A Spark setting whose key holds one of these is a secret: never on a command line."""


def is_secret(key: str) -> bool:
    return any(part in key.lower() for part in SECRET_KEY_PARTS)


def conf_dir(settings: Settings) -> Path:
    return settings.stack.state_dir / "spark" / "conf"


def _private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (narrowed before writing)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def write(settings: Settings) -> Path:
    """(Re)write the folder; its path."""
    folder = conf_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    conf = {
        "spark.master": settings.spark.master,
        **executor_conf(settings),
        **spark_conf(settings),
    }
    lines = [f"{key} {value}" for key, value in conf.items() if not is_secret(key)]
    header = "# written by kappa (kappa/sparkconf.py) at `kappa up`; secrets: see spark-env.sh\n"
    (folder / "spark-defaults.conf").write_text(header + "\n".join(lines) + "\n")
    pg = settings.postgres
    fields = [pg.host, str(pg.port), pg.catalog_db, pg.user, pg.password.get_secret_value()]
    _private(folder / "pgpass", ":".join(_pgpass_field(f) for f in fields) + "\n")
    env = {
        **spark_env(settings),
        "PYSPARK_PYTHON": sys.executable,
        "PGPASSFILE": str(folder / "pgpass"),
    }
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    (folder / "spark-env.sh").write_text("# written by kappa (kappa/sparkconf.py)\n" + exports)
    return folder
