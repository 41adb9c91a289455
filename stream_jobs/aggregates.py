"""The aggregate vocabulary of feature sets: functions, their split into partials, values.

An :class:`Agg` is one output column: a function of the vocabulary (:data:`COUNT`,
:data:`MONEY`, :data:`DISTINCT`, :data:`MAX`, :data:`ANY`) over a :class:`Value` of each
event (:data:`every`, :func:`of_type`, :func:`is_type`, :func:`column`, or a
:class:`Value` of your own). Each function also says how to aggregate it in parts
(``partial``, then ``merge``), which the live job's shared aggregation uses, the Iceberg
type of its result, which the feature tables use, and the same arithmetic in plain
Python (``start``, ``add``, ``combine``, ``result``), which the online path uses: one
definition, every engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Value:
    """An expression of one click event: as a Spark Column (built when called) and as a
    plain Python function of the decoded event. The two must agree: the unit tests run
    every feature set both ways against one oracle."""

    spark: Callable[[], Any]
    python: Callable[[Mapping[str, Any]], Any]

    def __call__(self) -> Any:
        return self.spark()


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
    # In Python: a state from start(), add(state, value) per event (a null value changes
    # nothing), combine(state, state) of two parts, result(state) the column's value.
    start: Callable[[], Any]
    add: Callable[[Any, Any], Any]
    combine: Callable[[Any, Any], Any]
    result: Callable[[Any], Any]


@dataclass(frozen=True)
class Agg:
    """One aggregate column: ``fn`` over each event's ``value`` (built lazily: a Column)."""

    name: str
    fn: Fn
    value: Value
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


def _plus(state: Any, value: Any) -> Any:
    return state if value is None else state + value


def _counted(state: int, value: Any) -> int:
    return state if value is None else state + 1


def _with(state: set[Any], value: Any) -> set[Any]:
    if value is not None:
        state.add(value)
    return state


def _larger(state: Any, value: Any) -> Any:
    if value is None:
        return state
    return value if state is None or value > state else state


def _same(state: Any) -> Any:
    return state


def _cents(state: Decimal) -> Decimal:
    return state.quantize(CENT)


COUNT = Fn(  # the non-null values
    "count",
    total=_count,
    partial=_count,
    merge=_sum,
    type="long",
    start=int,
    add=_counted,
    combine=_plus,
    result=_same,
)
MONEY = Fn(  # a sum, 0 for none, in cents
    "money",
    total=_money,
    partial=_sum,
    merge=_money,
    type="decimal(18,2)",
    start=Decimal,
    add=_plus,
    combine=_plus,
    result=_cents,
)
DISTINCT = Fn(
    "distinct",
    total=_distinct,
    partial=_set,
    merge=_distinct_of_sets,
    type="int",
    start=set,
    add=_with,
    combine=set.union,
    result=len,
)
MAX = Fn(
    "max",
    total=_max,
    partial=_max,
    merge=_max,
    type=None,
    start=lambda: None,
    add=_larger,
    combine=_larger,
    result=_same,
)
ANY = replace(MAX, name="any", type="boolean")  # of a condition: did it hold for one event


def _lit_one() -> Any:
    from pyspark.sql import functions as F

    return F.lit(1)


every = Value(_lit_one, lambda event: 1)  # the value every event has (count it)


def of_type(event_type: str) -> Value:
    """True for the events of ``event_type``, null for the others (count them)."""

    def spark() -> Any:
        from pyspark.sql import functions as F

        return F.when(F.col("event_type") == event_type, True)

    return Value(spark, lambda event: True if event["event_type"] == event_type else None)


def is_type(event_type: str) -> Value:
    """Whether the event is of ``event_type`` (``ANY`` of it: did one happen)."""

    def spark() -> Any:
        from pyspark.sql import functions as F

        return F.col("event_type") == event_type

    return Value(spark, lambda event: event["event_type"] == event_type)


def column(name: str) -> Value:
    """The event's column ``name``."""

    def spark() -> Any:
        from pyspark.sql import functions as F

        return F.col(name)

    return Value(spark, lambda event: event[name])


# Every feature set's freshness: the newest produced_at among a window's events.
MAX_PRODUCED_AT = Agg(
    "max_produced_at",
    MAX,
    column("produced_at"),
    "newest produced_at among the window's events",
    "timestamptz",
    required=True,
)
