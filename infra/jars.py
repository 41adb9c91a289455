"""Resolve the pinned JVM dependencies from Maven Central into the state folder.

The manifest is ``infra/pom.xml``; each profile is one service's classpath.
A profile is resolved once: a stamp file records the manifest's digest, so a
second run is a no-op until the manifest changes.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kappa.exceptions import JarResolutionError, ToolMissingError
from kappa.settings import StackSettings

POM = Path(__file__).resolve().parent / "pom.xml"
PROFILES: tuple[str, ...] = ("kafka", "registry", "connect", "connect-converter", "spark")
"""Maven profiles, named after the folder under ``<state>/jars`` they fill."""
OBJECT_STORE_PROFILES: tuple[str, ...] = ("s3proxy", "s3a")
"""Resolved once the object store is on: s3proxy, and Hadoop's S3A for Spark."""


def profiles(object_store: bool) -> tuple[str, ...]:
    return PROFILES + OBJECT_STORE_PROFILES if object_store else PROFILES


_FOLDERS = {
    "kafka": "kafka",
    "registry": "apicurio",
    "connect": "connect-plugins",
    # its own top-level folder: each profile's folder is wiped before it is re-resolved
    "connect-converter": "connect-converters",
    "spark": "spark",
    "s3proxy": "s3proxy",
    "s3a": "spark-s3a",
}


def _digest(profile: str) -> str:
    """Digest of what decides ``profile``'s jars: its own block and the properties it uses.

    Per profile, so that changing Spark's pins does not re-resolve (and delete) the jars
    of a running broker.
    """
    text = POM.read_text()
    block = re.search(rf"<profile>\s*<id>{re.escape(profile)}</id>.*?</profile>", text, re.S)
    if block is None:
        return hashlib.sha256(text.encode()).hexdigest()[:16]
    used = set(re.findall(r"\$\{([\w.]+)\}", block.group(0)))
    pins = [m.group(0) for m in re.finditer(r"<([\w.]+)>[^<]*</\1>", text) if m.group(1) in used]
    return hashlib.sha256("\n".join([block.group(0), *pins]).encode()).hexdigest()[:16]


def _stamp(stack: StackSettings, profile: str) -> Path:
    return stack.jars_dir / f".{profile}.stamp"


def folder(stack: StackSettings, profile: str) -> Path:
    """Where ``profile``'s jars land."""
    return stack.jars_dir / _FOLDERS[profile]


def is_resolved(stack: StackSettings, profile: str) -> bool:
    stamp = _stamp(stack, profile)
    return stamp.exists() and stamp.read_text().strip() == _digest(profile)


def _resolve(stack: StackSettings, profile: str) -> None:
    target = folder(stack, profile)
    # A changed manifest must not leave old versions beside new ones on a classpath.
    shutil.rmtree(target, ignore_errors=True)
    cmd = [
        stack.mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        "-P",
        profile,
        f"-Dkappa.jars={stack.jars_dir}",
        "process-resources",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        out = (result.stdout + result.stderr)[-3000:]
        raise JarResolutionError(
            f"Maven could not resolve profile '{profile}' of {POM}.\n{out}\n"
            "Check that Maven Central is reachable (or set a mirror in ~/.m2/settings.xml)."
        )
    _stamp(stack, profile).write_text(_digest(profile) + "\n")


EXT = Path(__file__).resolve().parent / "debezium-ext"
EXT_JAR = "kappa-debezium-ext.jar"


def _ext_digest() -> str:
    files = sorted(p for p in EXT.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]


def _ext_target(stack: StackSettings) -> Path:
    # Inside the Debezium plugin folder: a CustomConverter loads with the connector's classes.
    return folder(stack, "connect") / "debezium-connector-postgres" / EXT_JAR


def ext_is_built(stack: StackSettings) -> bool:
    stamp = stack.jars_dir / ".debezium-ext.stamp"
    return (
        _ext_target(stack).exists()
        and stamp.exists()
        and stamp.read_text().strip() == _ext_digest()
    )


def build_ext(stack: StackSettings) -> None:
    """Compile kappa's Debezium converter (infra/debezium-ext) into the plugin folder."""
    build = stack.state_dir / "build" / "debezium-ext"
    cmd = [stack.mvn, "-q", "-B", "-f", str(EXT / "pom.xml"), f"-Dkappa.build={build}", "package"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise JarResolutionError(
            f"building {EXT} failed:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    shutil.copyfile(next(build.glob("kappa-debezium-ext-*.jar")), _ext_target(stack))
    (stack.jars_dir / ".debezium-ext.stamp").write_text(_ext_digest() + "\n")


def ensure_jars(stack: StackSettings, profiles: tuple[str, ...] = PROFILES) -> list[str]:
    """Resolve every profile not yet in place; return the ones resolved now."""
    missing = [p for p in profiles if not is_resolved(stack, p)]
    build = "connect" in profiles and (bool(missing) or not ext_is_built(stack))
    if not missing and not build:
        return []
    if shutil.which(stack.mvn) is None:
        raise ToolMissingError(
            f"Maven ('{stack.mvn}') is not installed; run `make install` or "
            "`apt-get install -y maven` (or set KAPPA_MVN)."
        )
    stack.jars_dir.mkdir(parents=True, exist_ok=True)
    # Maven is mostly network- and startup-bound: resolve profiles side by side.
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        for future in [pool.submit(_resolve, stack, p) for p in missing]:
            future.result()
    if build:
        build_ext(stack)
        missing.append("debezium-ext")
    return missing


def spark_jars(stack: StackSettings) -> list[Path]:
    """The jars to hand Spark as ``spark.jars``."""
    return sorted(folder(stack, "spark").glob("*.jar"))
