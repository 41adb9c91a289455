"""PostgreSQL from Debian's packages, as kappa's own cluster in the state folder.

The server refuses to run as root, so when kappa runs as root the cluster is
owned by and runs as the ``postgres`` OS user. One role (``kappa``) owns the four
databases: the OLTP source, the Iceberg catalog, the registry and MLflow. Debezium
logs in as its own role (``kappa_cdc``): REPLICATION, and SELECT on the tables it
captures, granted by ``kappa connect apply`` with the publication it reads.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql

from infra.process import Port, Service, render
from kappa.exceptions import ToolMissingError
from kappa.settings import PostgresSettings


def find_bin_dir(configured: Path | None) -> Path:
    """The directory with ``initdb`` and ``postgres``."""
    if configured is not None:
        candidates = [configured]
    else:
        roots = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        candidates = list(reversed(roots))
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for bin_dir in candidates:
        if (bin_dir / "initdb").exists() and (bin_dir / "postgres").exists():
            return bin_dir
    raise ToolMissingError(
        "PostgreSQL server binaries not found; run `make install` or "
        "`apt-get install -y postgresql` (or set KAPPA_POSTGRES_BIN_DIR)."
    )


class Postgres(Service):
    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: roll back clients, checkpoint, exit.
    stop_signal = signal.SIGINT

    @property
    def cfg(self) -> PostgresSettings:
        return self.settings.postgres

    @property
    def managed(self) -> bool:
        return bool(self.cfg.managed)

    @property
    def endpoint(self) -> str:
        return f"postgresql://{self.cfg.host}:{self.cfg.port}"

    def ports(self) -> Sequence[Port]:
        return [Port(self.cfg.port, "KAPPA_POSTGRES_PORT")]

    # --- where things live ------------------------------------------------------------
    def run_as(self) -> str | None:
        return self.cfg.os_user if os.geteuid() == 0 else None

    def _readable_by_owner(self, path: Path) -> bool:
        user = self.run_as()
        if user is None:
            return True
        probe = subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)], check=False)
        return probe.returncode == 0

    @property
    def cluster_dir(self) -> Path:
        """Cluster folder: in the state folder when the server's OS user can reach it."""
        default = self.stack.data_dir / "postgres"
        self.stack.data_dir.mkdir(parents=True, exist_ok=True)
        if self._readable_by_owner(self.stack.data_dir):
            return default
        # e.g. a checkout under /root (mode 700): the postgres user cannot enter it.
        key = hashlib.sha256(str(self.stack.state_dir).encode()).hexdigest()[:12]
        return Path("/var/lib/kappa") / key / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir

    @property
    def pgdata(self) -> Path:
        return self.cluster_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.cluster_dir / "socket"

    @property
    def marker(self) -> str:
        return str(self.pgdata)

    # --- lifecycle ------------------------------------------------------------------
    def _chown(self, *paths: Path) -> None:
        user = self.run_as()
        if user is None:
            return
        uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(user).gr_gid
        for path in paths:
            for root, dirs, files in os.walk(path):
                os.chown(root, uid, gid)
                for name in dirs + files:
                    os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)

    def prepare(self) -> None:
        bin_dir = find_bin_dir(self.cfg.bin_dir)
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        conf = render(
            "postgresql.conf.tmpl",
            self.cluster_dir / "kappa.conf",
            host=self.cfg.host,
            port=self.cfg.port,
            socket_dir=self.socket_dir,
        )
        if not (self.pgdata / "PG_VERSION").exists():
            pwfile = self.cluster_dir / ".pw"
            pwfile.write_text(self.cfg.password.get_secret_value() + "\n")
            self._chown(self.cluster_dir)
            subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                user=self.run_as(),
            )
            pwfile.unlink()
            with (self.pgdata / "postgresql.conf").open("a") as fh:
                fh.write(f"\n# kappa\ninclude '{conf}'\n")
        self._chown(self.cluster_dir)

    def command(self) -> list[str]:
        return [str(find_bin_dir(self.cfg.bin_dir) / "postgres"), "-D", str(self.pgdata)]

    def cwd(self) -> Path:
        return self.cluster_dir

    def _connect_admin(self) -> Any:
        if self.managed:
            # Superuser over the cluster's own Unix socket (trust, local only).
            return psycopg2.connect(
                host=str(self.socket_dir),
                port=self.cfg.port,
                user="postgres",
                dbname="postgres",
                connect_timeout=2,
            )
        return psycopg2.connect(self.cfg.dsn("postgres"), connect_timeout=2)

    def healthy(self) -> bool:
        try:
            with self._connect_admin() as conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.close()
        except psycopg2.Error:
            return False
        return True

    def version(self) -> str | None:
        try:
            conn = self._connect_admin()
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                row = cur.fetchone()
            conn.close()
        except psycopg2.Error:
            return None
        return str(row[0]).split()[0] if row else None

    def after_start(self) -> None:
        """Create the kappa role and its databases (idempotent)."""
        if not self.managed:
            return
        conn = self._connect_admin()
        conn.autocommit = True
        password = self.cfg.password.get_secret_value()
        cdc_password = self.cfg.cdc_password.get_secret_value()
        with conn.cursor() as cur:
            _role(cur, self.cfg.user, "LOGIN REPLICATION CREATEDB", password)
            # Debezium's own role: it may stream the WAL and read what it is granted
            # (the captured tables, by `kappa connect apply`), and nothing else.
            _role(cur, self.cfg.cdc_user, "LOGIN REPLICATION NOCREATEDB NOCREATEROLE", cdc_password)
            for db in self.cfg.databases:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
                if not cur.fetchone():
                    cur.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(db), sql.Identifier(self.cfg.user)
                        )
                    )
        conn.close()


def _role(cur: Any, name: str, attributes: str, password: str) -> None:
    """Create role ``name`` with ``attributes``, or bring an existing one to them."""
    from psycopg2 import sql

    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
    verb = "ALTER" if cur.fetchone() else "CREATE"
    cur.execute(
        sql.SQL("{} ROLE {} {} PASSWORD {}").format(
            sql.SQL(verb), sql.Identifier(name), sql.SQL(attributes), sql.Literal(password)
        )
    )
