"""s3proxy (``org.gaul:s3proxy`` from Maven Central): an S3 API over a local folder.

Run when the object store is on (``kappa up --object-store``) and managed; its
``filesystem-nio2`` backend keeps each bucket as a folder under
``<state>/data/s3/buckets``. It checks
AWS signatures (v2 and v4) against ``KAPPA_S3_ACCESS_KEY_ID`` / ``_SECRET_ACCESS_KEY``,
written to its properties file (mode 0600), not its command line. Healthy when a signed
``ListBuckets`` succeeds; ``after_start`` creates ``KAPPA_S3_BUCKET``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from infra import jars
from infra.process import Port, Service
from kappa import objectstore
from kappa.exceptions import ServiceStartError
from kappa.settings import ObjectStoreSettings

S3PROXY_MAIN = "org.gaul.s3proxy.Main"

LOGBACK = """<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{30} %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="OUT"/></root>
</configuration>
"""
"""s3proxy logs every request at DEBUG without a configuration of its own."""


class ObjectStore(Service):
    name = "s3"

    @property
    def cfg(self) -> ObjectStoreSettings:
        return self.settings.s3

    @property
    def managed(self) -> bool:
        """On and managed, or left running by an earlier ``kappa up --object-store``."""
        return (self.settings.object_store and self.cfg.managed) or self.pid() is not None

    @property
    def endpoint(self) -> str:
        return self.cfg.endpoint or f"https://s3.{self.cfg.region}.amazonaws.com"

    def ports(self) -> Sequence[Port]:
        return [Port(self.cfg.port, "KAPPA_S3_PORT")]

    @property
    def properties(self) -> Path:
        return self.data_dir / "s3proxy.conf"

    @property
    def marker(self) -> str:
        return str(self.properties)

    @property
    def buckets_dir(self) -> Path:
        return self.data_dir / "buckets"

    def prepare(self) -> None:
        self.buckets_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "# written by kappa (infra/services/objectstore.py); holds the key pair: mode 0600",
            f"s3proxy.endpoint=http://{self.cfg.host}:{self.cfg.port}",
            "s3proxy.authorization=aws-v2-or-v4",
            f"s3proxy.identity={self.cfg.access_key_id}",
            f"s3proxy.credential={self.cfg.secret_access_key.get_secret_value()}",
            # The AWS SDKs (Java v2 from 2.30, boto3 from 1.36) send CRC checksum headers
            # s3proxy does not know, on DeleteObjects even when told "when required".
            "s3proxy.ignore-unknown-headers=true",
            # "filesystem-nio2" lists an empty folder's marker object ("offsets/"), as S3A
            # needs for Spark's checkpoints (the older "filesystem" backend does not).
            "jclouds.provider=filesystem-nio2",
            f"jclouds.filesystem.basedir={self.buckets_dir}",
            "jclouds.identity=local",  # the backend's own login, unused by a folder
            "jclouds.credential=local",
        ]
        descriptor = os.open(self.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        (self.data_dir / "logback.xml").write_text(LOGBACK)

    def command(self) -> list[str]:
        folder = jars.folder(self.stack, "s3proxy")
        if not any(folder.glob("s3proxy-*.jar")):
            raise ServiceStartError(
                f"s3: s3proxy's jars are missing under {folder}; run `kappa up`."
            )
        return [
            self.stack.java,
            "-Xms32m",
            f"-Xmx{self.cfg.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlogback.configurationFile={self.data_dir / 'logback.xml'}",
            "-cp",
            f"{folder}/*",
            S3PROXY_MAIN,
            "--properties",
            str(self.properties),
        ]

    def healthy(self) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            objectstore.client(self.settings).list_buckets()
        except (BotoCoreError, ClientError):
            return False
        return True

    def after_start(self) -> None:
        objectstore.ensure_bucket(self.settings)

    def version(self) -> str | None:
        found = sorted(jars.folder(self.stack, "s3proxy").glob("s3proxy-*.jar"))
        if not self.managed:
            return "external"
        return found[0].stem.removeprefix("s3proxy-") if found else None
