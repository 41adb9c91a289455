"""The S3-compatible object store, as each of kappa's clients is told about it.

One bucket (``KAPPA_S3_BUCKET``) holds the warehouse, the checkpoints and MLflow's
artifacts when the store is on (``Settings.object_store``). The clients:

- PyIceberg: ``s3.*`` FileIO properties (in-process, :func:`pyiceberg_props`);
- Spark: Hadoop's S3A for the Iceberg tables (Iceberg's ``HadoopFileIO``) and the
  checkpoints alike, ``s3://`` mapped onto it (:func:`hadoop_conf`);
- MLflow's client and server: boto3, with ``MLFLOW_S3_ENDPOINT_URL`` (:func:`boto_env`);
- kappa's own reads of checkpoints: a PyArrow filesystem (:func:`filesystem`).

The key pair never goes into a Spark setting or a command line: the JVMs and boto3 read
the AWS shared credentials file :func:`credentials_file` writes (mode 0600), named by
``AWS_SHARED_CREDENTIALS_FILE`` in their environment. Against AWS itself, leave the key
pair unset and the SDKs' default chain (instance profile, web identity) applies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kappa.settings import Settings

SCHEMES = ("s3", "s3a")


def on_store(location: str) -> bool:
    """Whether ``location`` is an object-store URI (``s3://`` or ``s3a://``)."""
    return location.split("://", 1)[0] in SCHEMES if "://" in location else False


def _secret(settings: Settings) -> str:
    return settings.s3.secret_access_key.get_secret_value()


def pyiceberg_props(settings: Settings) -> dict[str, str]:
    """PyIceberg's FileIO properties for the store (its secret included: in-process only)."""
    cfg = settings.s3
    props = {
        "s3.region": cfg.region,
        "s3.access-key-id": cfg.access_key_id,
        "s3.secret-access-key": _secret(settings),
        "s3.force-virtual-addressing": str(not cfg.path_style).lower(),
    }
    if cfg.endpoint:
        props["s3.endpoint"] = cfg.endpoint
    return props


def credentials_file(settings: Settings) -> Path:
    """``<state>/s3/credentials``: the key pair as an AWS shared credentials file, readable
    by this user only, rewritten from the settings each time (its path)."""
    folder = settings.stack.state_dir / "s3"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "credentials"
    text = (
        "# written by kappa (kappa/objectstore.py): KAPPA_S3_ACCESS_KEY_ID, _SECRET_ACCESS_KEY\n"
        f"[default]\naws_access_key_id = {settings.s3.access_key_id}\n"
        f"aws_secret_access_key = {_secret(settings)}\n"
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    return path


def client_env(settings: Settings) -> dict[str, str]:
    """Environment for a JVM or boto3 that reaches the store: the credentials file, the
    region, and MLflow's endpoint. Empty with the store off."""
    if not settings.object_store:
        return {}
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials_file(settings)),
        "AWS_REGION": settings.s3.region,
        "AWS_DEFAULT_REGION": settings.s3.region,
    }
    if settings.s3.endpoint:
        env["MLFLOW_S3_ENDPOINT_URL"] = settings.s3.endpoint
        # The AWS SDKs' default since 2025 adds CRC trailers to uploads, which S3 APIs
        # other than AWS's (s3proxy among them) fail to verify: only where an API requires.
        env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
        env["AWS_RESPONSE_CHECKSUM_VALIDATION"] = "when_required"
    return env


def export_env(settings: Settings) -> None:
    """Set :func:`client_env` in this process (boto3 under MLflow, PyArrow's S3 client
    under PyIceberg), keeping what the caller already set."""
    for key, value in client_env(settings).items():
        os.environ.setdefault(key, value)


def hadoop_conf(settings: Settings) -> dict[str, str]:
    """Spark settings for S3A on the store (no secret: see the module's docstring)."""
    if not settings.object_store:
        return {}
    cfg = settings.s3
    conf = {
        # s3:// (the URIs users and PyIceberg write) is S3A in the JVM, as on EMR.
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.path.style.access": str(cfg.path_style).lower(),
        "spark.hadoop.fs.s3a.endpoint.region": cfg.region,
        # env, system properties, AWS_SHARED_CREDENTIALS_FILE, then web identity and
        # instance profiles: the key pair is read from the file, never a setting.
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider"
        ),
        # Executors are separate JVMs on a cluster: they read the same file.
        "spark.executorEnv.AWS_SHARED_CREDENTIALS_FILE": str(credentials_file(settings)),
    }
    if cfg.endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = cfg.endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(
            cfg.endpoint.startswith("https://")
        ).lower()
    return conf


def client(settings: Settings) -> Any:
    """A boto3 S3 client on the store."""
    import boto3

    cfg = settings.s3
    return boto3.client(
        "s3",
        endpoint_url=cfg.endpoint,
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key_id,
        aws_secret_access_key=_secret(settings),
        config=_boto_config(settings),
    )


def _boto_config(settings: Settings) -> Any:
    from botocore.config import Config

    style = "path" if settings.s3.path_style else "virtual"
    return Config(s3={"addressing_style": style}, retries={"max_attempts": 2})


def ensure_bucket(settings: Settings) -> bool:
    """Create the bucket unless it exists; True if created now."""
    from botocore.exceptions import ClientError

    s3 = client(settings)
    try:
        s3.head_bucket(Bucket=settings.s3.bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise
    s3.create_bucket(Bucket=settings.s3.bucket)
    return True


def filesystem(settings: Settings, location: str) -> tuple[Any, str]:
    """A PyArrow filesystem for ``location`` and the path on it (local or the store)."""
    from pyarrow import fs

    if not on_store(location):
        return fs.LocalFileSystem(), location.removeprefix("file://")
    cfg = settings.s3
    endpoint = cfg.endpoint or ""
    s3 = fs.S3FileSystem(
        access_key=cfg.access_key_id,
        secret_key=_secret(settings),
        region=cfg.region,
        endpoint_override=endpoint.split("://", 1)[-1] or None,
        scheme="https" if not endpoint or endpoint.startswith("https://") else "http",
        force_virtual_addressing=not cfg.path_style,
    )
    return s3, location.split("://", 1)[1]


def delete_tree(settings: Settings, location: str) -> int:
    """Delete everything under ``location`` (a folder, or a prefix on the store); the
    objects deleted there (0 for a local folder or nothing found)."""
    if not on_store(location):
        import shutil

        shutil.rmtree(location.removeprefix("file://"), ignore_errors=True)
        return 0
    bucket, _, prefix = location.split("://", 1)[1].partition("/")
    s3 = client(settings)
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    # Children before the folder markers they sit under ("a/b/c" before "a/b/"): a
    # marker's folder must be empty when a filesystem-backed store deletes it.
    keys = sorted((o["Key"] for page in pages for o in page.get("Contents", [])), reverse=True)
    for start in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[start : start + 1000]]
        s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    return len(keys)
