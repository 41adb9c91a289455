"""Apache Airflow beside kappa: the DAGs in ``dags/``, run by Airflow from its own venv.

Airflow 3 pins (its SQLAlchemy, pydantic and FastAPI ranges) are its own, so it lives
in ``.venv-airflow`` (made by ``make install``) and its DAGs call kappa's CLI. Its
metadata database is ``airflow`` in kappa's PostgreSQL; its home (config, logs, the
standalone admin password) is ``<state>/airflow``. Every ``airflow`` command runs
with :func:`environment`: the connection URL, which holds the database password, is
only ever in the environment.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from kappa import processes
from kappa.exceptions import KappaError
from kappa.settings import PROJECT_ROOT, Settings

DAGS_DIR = PROJECT_ROOT / "dags"
AIRFLOW_BIN = PROJECT_ROOT / ".venv-airflow" / "bin" / "airflow"
KAPPA_BIN = PROJECT_ROOT / ".venv" / "bin" / "kappa"
API_PORT = 8080


class AirflowError(KappaError):
    """Airflow is missing or one of its commands failed."""


def home(settings: Settings) -> Path:
    path = settings.stack.state_dir / "airflow"
    path.mkdir(parents=True, exist_ok=True)
    return path


def environment(settings: Settings) -> dict[str, str]:
    """The current environment plus Airflow's configuration for kappa."""
    pg = settings.postgres
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home(settings)),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.sqlalchemy_url(pg.airflow_db),
        "AIRFLOW__API__PORT": str(API_PORT),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home(settings) / "logs"),
        "KAPPA_BIN": str(KAPPA_BIN),
        # `airflow standalone` starts its components as `airflow …` found on the PATH
        "PATH": f"{AIRFLOW_BIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _require() -> None:
    if not AIRFLOW_BIN.exists():
        raise AirflowError(
            f"Airflow is not installed ({AIRFLOW_BIN} is missing): run `make install`"
        )


def ensure_database(settings: Settings) -> None:
    """Create the ``airflow`` database if it is missing, then ``airflow db migrate``."""
    import psycopg2
    from psycopg2 import sql

    _require()
    pg = settings.postgres
    conn = psycopg2.connect(pg.dsn(pg.shop_db))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg.airflow_db,))
        if not cur.fetchone():
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.airflow_db)))
    conn.close()
    proc = subprocess.run(
        [str(AIRFLOW_BIN), "db", "migrate"],
        env=environment(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise AirflowError("`airflow db migrate` failed: " + " | ".join(tail))


def run(settings: Settings, args: list[str]) -> int:
    """``airflow ARGS`` with kappa's environment; its exit code (output to the terminal)."""
    _require()
    return subprocess.call([str(AIRFLOW_BIN), *args], env=environment(settings))


def _pid_file(settings: Settings) -> Path:
    return home(settings) / "standalone.pid"


def up(settings: Settings) -> dict[str, str | int]:
    """``airflow standalone`` (API server + UI, scheduler, DAG processor, triggerer) in the
    background, logging to ``<state>/airflow/standalone.log``; a no-op when it runs."""
    pid = processes.running_pid(_pid_file(settings), "standalone")
    log = home(settings) / "standalone.log"
    if pid is None:
        ensure_database(settings)
        _require()
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(AIRFLOW_BIN), "standalone"],
                env=environment(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        pid = proc.pid
        _pid_file(settings).write_text(str(pid))
    return {
        "pid": pid,
        "ui": f"http://127.0.0.1:{API_PORT}",
        "log": str(log),
        "password_file": str(home(settings) / "simple_auth_manager_passwords.json.generated"),
    }


def down(settings: Settings) -> bool:
    """Stop the standalone Airflow this state folder started; whether one was running."""
    pid = processes.running_pid(_pid_file(settings), "standalone")
    if pid is None:
        return False
    processes.end_group(pid, grace_s=30)
    _pid_file(settings).unlink(missing_ok=True)
    return True
