"""The aggregate vocabulary of feature sets: functions, their split into partials, values.

An :class:`Agg` is one output column: a function of the vocabulary (:data:`COUNT`,
:data:`MONEY`, :data:`DISTINCT`, :data:`MAX`, :data:`ANY`) over an expression of each
event (:func:`every`, :func:`of_type`, :func:`is_type`, :func:`column`, or any
function returning a Spark Column). Each function also says how to aggregate it in
parts (``partial``, then ``merge``), which the live job's shared aggregation uses, and
the Iceberg type of its result, which the feature tables use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fn:
    """An aggregate function of the vocabulary, and its split into partials.

    ``merge`` over the ``partial`` of each part of a window's events equals ``total``
    over all of them: the live job aggregates panes, then windows from panes.
    """

    name: str
    total: Callable[[Any], Any]  # over the events
    partial: Callable[[Any], Any]  # over the events of one pane
    merge: Callable[[Any], Any]  # over the partials of a window's panes
    type: str | None  # Iceberg type of the result (None: the value's own, given by the Agg)


@dataclass(frozen=True)
class Agg:
    """One aggregate column: ``fn`` over each event's ``value`` (built lazily: a Column)."""

    name: str
    fn: Fn
    value: Callable[[], Any]
    doc: str = ""
    type: str | None = None  # for a function keeping its value's type (max)
    required: bool | None = None  # default: only MAX of a nullable value can be null

    @property
    def not_null(self) -> bool:
        return self.required if self.required is not None else self.fn.type is not None

    @property
    def column_type(self) -> str:
        found = self.fn.type or self.type
        if found is None:
            raise ValueError(f"aggregate {self.name}: {self.fn.name} needs the value's type")
        return found

    def column(self, mask: Any = None) -> Any:
        """The aggregate; with ``mask``, over the events it holds for only (null elsewhere)."""
        return self.fn.total(self._masked(mask)).alias(self.name)

    def partial(self, mask: Any = None) -> Any:
        """The aggregate's partial over one pane's events (``mask`` as in :meth:`column`)."""
        return self.fn.partial(self._masked(mask))

    def merge(self, partials: Any) -> Any:
        """The aggregate from the partials of every pane of a window."""
        return self.fn.merge(partials)

    def signature(self) -> str:
        return f"{self.fn.name}({self.value()})"

    def _masked(self, mask: Any) -> Any:
        from pyspark.sql import functions as F

        return self.value() if mask is None else F.when(mask, self.value())


def _count(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.count(value)


def _sum(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.sum(value)


def _money(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.coalesce(F.sum(value), F.lit(0)).cast("decimal(18,2)")


def _set(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.collect_set(value)


def _distinct(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.size(F.collect_set(value))


def _distinct_of_sets(sets: Any) -> Any:
    from pyspark.sql import functions as F

    return F.size(F.array_distinct(F.flatten(F.collect_list(sets))))


def _max(value: Any) -> Any:
    from pyspark.sql import functions as F

    return F.max(value)


COUNT = Fn("count", total=_count, partial=_count, merge=_sum, type="long")  # non-null values
# A sum, 0 for none, 2 decimals
MONEY = Fn("money", total=_money, partial=_sum, merge=_money, type="decimal(18,2)")
DISTINCT = Fn("distinct", total=_distinct, partial=_set, merge=_distinct_of_sets, type="int")
MAX = Fn("max", total=_max, partial=_max, merge=_max, type=None)
ANY = Fn("any", total=_max, partial=_max, merge=_max, type="boolean")  # of a condition


def every() -> Any:
    """The value every event has (count it)."""
    from pyspark.sql import functions as F

    return F.lit(1)


def of_type(event_type: str) -> Callable[[], Any]:
    """True for the events of ``event_type``, null for the others (count them)."""

    def value() -> Any:
        from pyspark.sql import functions as F

        return F.when(F.col("event_type") == event_type, True)

    return value


def is_type(event_type: str) -> Callable[[], Any]:
    """Whether the event is of ``event_type`` (``ANY`` of it: did one happen)."""

    def value() -> Any:
        from pyspark.sql import functions as F

        return F.col("event_type") == event_type

    return value


def column(name: str) -> Callable[[], Any]:
    """The event's column ``name``."""

    def value() -> Any:
        from pyspark.sql import functions as F

        return F.col(name)

    return value


# Every feature set's freshness: the newest produced_at among a window's events.
MAX_PRODUCED_AT = Agg(
    "max_produced_at",
    MAX,
    column("produced_at"),
    "newest produced_at among the window's events",
    "timestamptz",
    required=True,
)
