"""A backfill's range: ``--from``/``--to`` resolved to exact offsets per partition.

``earliest``/``latest``, an ISO time or ``partition:offset,…``. A range Kafka has
already deleted (retention) is refused with the missing offsets named: never a
silent partial replay.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kappa import topics
from kappa.settings import Settings
from stream_jobs.backfill.record import BackfillError, RangeDeletedError


def _parse_offsets(text: str) -> dict[str, int]:
    out = {}
    for part in text.split(","):
        partition, _, offset = part.partition(":")
        if not offset:
            raise BackfillError(
                f"cannot read '{text}': give earliest, latest, an ISO time "
                "(2026-01-05T08:00:00Z) or partition:offset pairs (0:1200,1:1180)"
            )
        out[str(int(partition))] = int(offset)
    return out


def parse_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def resolve_range(
    settings: Settings, topic: str, from_arg: str, to_arg: str = "latest"
) -> tuple[dict[str, int], dict[str, int]]:
    """Exact [start, end) offsets per partition; refuses ranges retention has deleted.

    Raises:
        BackfillError: No such topic or partition, or the range ends beyond the log.
        RangeDeletedError: Part of the range is gone from Kafka (the offsets are named).
    """
    consumer = topics.consumer(settings, "kappa-backfill")
    try:
        marks = {str(p): m for p, m in topics.watermarks(settings, topic, client=consumer).items()}
        if not marks:
            raise BackfillError(f"topic {topic} does not exist on {settings.kafka.bootstrap}")
        start = _offsets_at(consumer, topic, marks, from_arg, "from")
        end = _offsets_at(consumer, topic, marks, to_arg, "to")
    finally:
        consumer.close()
    _refuse_outside_log(topic, marks, start, end)
    return start, {p: max(end[p], start[p]) for p in end}


def _offsets_at(
    consumer: Any, topic: str, marks: dict[str, tuple[int, int]], arg: str, edge: str
) -> dict[str, int]:
    """Per partition, the offset ``arg`` names at the ``edge`` ("from" or "to") of a range."""
    if arg == "earliest":
        return {p: low for p, (low, _) in marks.items()}
    if arg == "latest":
        return {p: high for p, (_, high) in marks.items()}
    when = parse_time(arg)
    if when is None:
        offsets = _parse_offsets(arg)
        unknown = set(offsets) - set(marks)
        if unknown:
            raise BackfillError(f"{topic} has no partition(s) {sorted(unknown)}")
        return {p: offsets.get(p, marks[p][0] if edge == "from" else marks[p][1]) for p in marks}
    return _offsets_for_time(consumer, topic, marks, when, edge=edge, arg=arg)


def _offsets_for_time(
    consumer: Any,
    topic: str,
    marks: dict[str, tuple[int, int]],
    when: datetime,
    *,
    edge: str,
    arg: str,
) -> dict[str, int]:
    """The first offset at or after ``when`` per partition; a "from" edge whose records
    before ``when`` retention deleted is refused."""
    from confluent_kafka import TopicPartition

    ms = int(when.timestamp() * 1000)
    found = consumer.offsets_for_times(
        [TopicPartition(topic, int(p), ms) for p in marks], timeout=10
    )
    out = {}
    for tp in found:
        p = str(tp.partition)
        out[p] = marks[p][1] if tp.offset < 0 else tp.offset
        if edge == "from" and marks[p][0] > 0 and out[p] == marks[p][0]:
            first = _first_timestamp(consumer, topic, tp.partition, marks[p][0])
            if first is not None and first > ms:
                oldest = datetime.fromtimestamp(first / 1000, UTC).isoformat()
                raise RangeDeletedError(
                    f"{topic} partition {p}: records before {oldest} "
                    f"(offsets 0-{marks[p][0] - 1}) were deleted by retention, so "
                    f"a replay from {arg} would be partial; replay from "
                    f"{oldest} or later, or raise KAPPA_KAFKA_RETENTION_HOURS for future replays"
                )
    return out


def _refuse_outside_log(
    topic: str, marks: dict[str, tuple[int, int]], start: dict[str, int], end: dict[str, int]
) -> None:
    deleted = [
        f"partition {p}: offsets {start[p]}-{marks[p][0] - 1}"
        for p in start
        if start[p] < marks[p][0]
    ]
    if deleted:
        raise RangeDeletedError(
            f"{topic}: the requested range was already deleted from Kafka by retention "
            f"({'; '.join(deleted)}); the earliest offsets still there are "
            f"{ {p: low for p, (low, _) in marks.items()} }. Replay from those, or raise "
            "KAPPA_KAFKA_RETENTION_HOURS for future replays."
        )
    beyond = [f"partition {p}: {end[p]} > {marks[p][1]}" for p in end if end[p] > marks[p][1]]
    if beyond:
        raise BackfillError(f"{topic}: the range ends beyond the log ({'; '.join(beyond)})")


def _first_timestamp(consumer: Any, topic: str, partition: int, offset: int) -> int | None:
    from confluent_kafka import TopicPartition

    consumer.assign([TopicPartition(topic, partition, offset)])
    try:
        msg = consumer.poll(10)
        return None if msg is None or msg.error() else int(msg.timestamp()[1])
    finally:
        consumer.unassign()
