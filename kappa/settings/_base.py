"""What every settings model shares: the checkout's root and the model config."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout kappa runs from (editable install): holds infra/, connect/, schemas/."""


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="forbid")
