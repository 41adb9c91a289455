"""Connector configs as reviewable JSON: loading, placeholder rendering, diffing.

A connector file (``connect/connectors/<name>.json``) is what Connect's REST API
takes, ``{"name": ..., "config": {...}}``, with every value a string. Values
that depend on where kappa runs are placeholders, ``${component.field}``, filled
from :mod:`kappa.settings` (``${postgres.host}`` is ``settings.postgres.host``),
so the file stays the same on every machine and holds no password. Connect's own
config-provider syntax, ``${provider:path:key}``, contains colons and is left
alone for the worker to resolve.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, SecretStr

from kappa.exceptions import ConnectorConfigError
from kappa.settings import Settings

PLACEHOLDER = re.compile(r"\$\{([a-z_]+)\.([a-z_]+)\}")
"""``${component.field}``: a kappa setting. No colon, unlike Connect's config providers."""

SECRET_MARKERS = ("password", "secret", "token")
"""Config keys containing one of these are masked in every printed diff."""


@dataclass(frozen=True)
class ConnectorSpec:
    """One connector as declared in a JSON file, before placeholders are filled."""

    name: str
    config: Mapping[str, str]
    path: Path | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)

    @property
    def connector_class(self) -> str:
        return self.config["connector.class"]

    def with_overrides(
        self, name: str | None = None, config: Mapping[str, str] | None = None
    ) -> ConnectorSpec:
        """A copy with another name and some keys replaced (tests run side-by-side copies).

        Args:
            name: The new connector name; the same name when None.
            config: Connect keys to set; values may hold placeholders.
        """
        merged = dict(self.overrides) | dict(config or {})
        return ConnectorSpec(name or self.name, self.config, self.path, merged)

    def render(self, settings: Settings) -> dict[str, str]:
        """The config Connect receives: placeholders filled, overrides applied, name set."""
        where = str(self.path or self.name)
        rendered = {k: _fill(v, settings, where, k) for k, v in self.config.items()}
        rendered |= {k: _fill(v, settings, where, k) for k, v in self.overrides.items()}
        rendered["name"] = self.name
        return rendered


def _resolve(settings: Settings, component: str, name: str) -> str:
    section = getattr(settings, component, None)
    if not isinstance(section, BaseModel):
        raise KeyError(component)
    if not hasattr(section, name):
        raise KeyError(f"{component}.{name}")
    value = getattr(section, name)
    if value is None:
        raise KeyError(f"{component}.{name} (unset)")
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def _fill(value: str, settings: Settings, where: str, key: str) -> str:
    def sub(match: re.Match[str]) -> str:
        try:
            return _resolve(settings, match.group(1), match.group(2))
        except KeyError as exc:
            components = ", ".join(sorted(Settings.model_fields))
            raise ConnectorConfigError(
                f"{where}: key '{key}' names unknown setting ${{{match.group(1)}."
                f"{match.group(2)}}} ({exc}); use ${{component.field}} with a field of "
                f"kappa.settings, components: {components}"
            ) from None

    return PLACEHOLDER.sub(sub, value)


def parse_connector(text: str, where: str = "<string>") -> ConnectorSpec:
    """Parse one connector file's text.

    Args:
        text: JSON of the form ``{"name": str, "config": {str: str}}``.
        where: File name used in error messages.

    Raises:
        ConnectorConfigError: Not JSON, a missing name/config/connector.class, or a
            non-string value.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectorConfigError(f"{where}: not valid JSON ({exc}); fix the file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ConnectorConfigError(
            f"{where}: needs a top-level string 'name' and a 'config' object"
        )
    config = doc.get("config")
    if not isinstance(config, dict) or "connector.class" not in config:
        raise ConnectorConfigError(f"{where}: 'config' must be an object with 'connector.class'")
    bad = sorted(k for k, v in config.items() if not isinstance(v, str))
    if bad:
        raise ConnectorConfigError(
            f"{where}: values must be strings as Connect stores them; quote {', '.join(bad)}"
        )
    extra = sorted(set(doc) - {"name", "config"})
    if extra:
        raise ConnectorConfigError(f"{where}: unknown top-level keys {extra}; only name, config")
    return ConnectorSpec(doc["name"], config, Path(where) if where != "<string>" else None)


def load_connectors(directory: Path) -> list[ConnectorSpec]:
    """Every ``*.json`` connector under ``directory``, sorted by file name.

    Raises:
        ConnectorConfigError: A file is malformed, or two files use the same name.
    """
    if not directory.is_dir():
        raise ConnectorConfigError(
            f"no connector folder at {directory}; set KAPPA_CONNECT_CONNECTORS_DIR"
        )
    specs = [parse_connector(p.read_text(), str(p)) for p in sorted(directory.glob("*.json"))]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConnectorConfigError(f"{directory}: connector names used twice: {dupes}")
    return specs


def mask(key: str, value: str) -> str:
    """``value``, or ``****`` when ``key`` holds a secret."""
    return "****" if any(m in key.lower() for m in SECRET_MARKERS) else value


def diff_configs(current: Mapping[str, str], desired: Mapping[str, str]) -> list[str]:
    """Readable differences from ``current`` to ``desired``, secrets masked.

    Returns:
        One line per changed key, sorted: ``+ key: new``, ``- key: old`` or
        ``~ key: old -> new``; empty when the two are equal.
    """
    lines = []
    for key in sorted(set(current) | set(desired)):
        old, new = current.get(key), desired.get(key)
        if old == new:
            continue
        if old is None:
            lines.append(f"+ {key}: {mask(key, str(new))}")
        elif new is None:
            lines.append(f"- {key}: {mask(key, old)}")
        else:
            lines.append(f"~ {key}: {mask(key, old)} -> {mask(key, new)}")
    return lines
