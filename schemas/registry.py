"""What the registry answers about a contract: a compatibility verdict, a registration.

Plain data, no I/O: the one client of the registry is :mod:`kappa.registry`, which
fills these in (this package imports nothing of ours).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Compatibility:
    """Whether a schema may be registered under a subject, and if not, why."""

    subject: str
    compatible: bool
    level: str
    latest_version: int | None = None
    problems: tuple[str, ...] = field(default=())

    def explain(self) -> str:
        """One human sentence: compatible, or what breaks."""
        if self.compatible:
            against = f"version {self.latest_version}" if self.latest_version else "nothing yet"
            return f"compatible ({self.level}) with {self.subject} {against}"
        why = "; ".join(self.problems) or "the registry refused it without saying why"
        return (
            f"incompatible ({self.level}) with {self.subject} version {self.latest_version}: {why}"
        )


@dataclass(frozen=True)
class Registration:
    """The outcome of registering: the schema id, or the compatibility verdict that refused it."""

    subject: str
    compatibility: Compatibility
    schema_id: int | None = None
    version: int | None = None


@dataclass(frozen=True)
class SubjectInfo:
    subject: str
    version: int
    schema_id: int
    compatibility: str | None
    name: str | None
