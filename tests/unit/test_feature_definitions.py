"""Every feature definition on a local SparkSession over in-memory events, no service.

The batch plan (``features.expected``, what backfills and `kappa features late` run) is
compared window for window, column for column, with the independent pandas oracle.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from kappa.settings import Settings
from stream_jobs import feature_sets as features
from tests.integration import featureoracle as oracle

TYPES = ("page_view", "search", "add_to_cart", "remove_from_cart", "checkout")


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("kappa-unit-features")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()


def _events(n: int, seed: int) -> list[dict[str, Any]]:
    """Clicks of a few users over three hours (sessions split by long pauses), with
    redeliveries of the same ``event_id``."""
    rnd = random.Random(seed)
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(n):
        at += timedelta(seconds=rnd.choice([3, 20, 45, 90, 2400]))
        kind = rnd.choice(TYPES)
        out.append(
            {
                "event_id": str(uuid.UUID(int=(seed << 64) + i)),
                "event_time": at,
                "produced_at": at + timedelta(milliseconds=rnd.randint(5, 900)),
                "user_id": rnd.randint(1, 6),
                "event_type": kind,
                "product_id": None if kind in ("search", "checkout") else rnd.randint(100, 111),
                "price": None if kind == "search" else Decimal(f"{rnd.randint(1, 90)}.99"),
                "quantity": rnd.randint(1, 3),
            }
        )
    return out + [dict(e) for e in rnd.sample(out, 15)]  # duplicates, same event_id


def _frame(spark: Any, records: list[dict[str, Any]]) -> Any:
    from pyspark.sql import types as T

    schema = T.StructType(
        [
            T.StructField("event_id", T.StringType()),
            T.StructField("event_time", T.TimestampType()),
            T.StructField("produced_at", T.TimestampType()),
            T.StructField("user_id", T.LongType()),
            T.StructField("event_type", T.StringType()),
            T.StructField("product_id", T.LongType()),
            T.StructField("price", T.DecimalType(10, 2)),
            T.StructField("quantity", T.IntegerType()),
        ]
    )
    rows = [tuple(r[c] for c in features.EVENT_COLUMNS) for r in records]
    return spark.createDataFrame(rows, schema)


def _rows(frame: Any, keys: tuple[str, str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for row in frame.collect():
        record = row.asDict()
        for col, value in record.items():
            if isinstance(value, datetime):
                record[col] = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        out[(int(record[keys[0]]), record[keys[1]])] = record
    return out


ORACLES = {
    "user_activity_1m": oracle.user_activity_1m,
    "user_activity_1h": oracle.user_activity_1h,
    "user_sessions": oracle.user_sessions,
    "product_popularity_5m": oracle.product_popularity_5m,
}


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_batch_plan_equals_the_independent_oracle(spark: Any, name: str) -> None:
    # Spark hands back naive UTC timestamps with the session in UTC: compare in UTC.
    records = _events(250, seed=11)
    _assert_equals_oracle(
        features.expected(spark, Settings(), name, _frame(spark, records)), name, records
    )


def _keys(name: str) -> tuple[str, str]:
    return features.DEFINITIONS[name].keys


def _assert_equals_oracle(frame: Any, name: str, records: list[dict[str, Any]]) -> None:
    """``frame`` holds the windows of ``name`` the independent oracle computes from
    ``records``: the same keys, and every oracle column equal."""
    _assert_rows_equal(_rows(frame, _keys(name)), name, records)


def _assert_rows_equal(
    got: dict[tuple[Any, ...], dict[str, Any]], name: str, records: list[dict[str, Any]]
) -> None:
    want = ORACLES[name](oracle.events_frame(records))
    assert len(want) > 20, "the sample must span many windows"
    assert set(got) == set(want), f"{name}: {sorted(set(got) ^ set(want))[:3]}"
    for key, columns in want.items():
        for col, value in columns.items():
            assert got[key][col] == value, f"{name} {key} {col}: {got[key][col]!r} != {value!r}"


@pytest.mark.parametrize("name", sorted(ORACLES))
def test_the_python_plan_equals_the_independent_oracle(name: str) -> None:
    """The same definition computed event by event in plain Python (the online path's
    arithmetic) gives the oracle's windows too, and the table's columns."""
    from stream_jobs import pyplan

    records = _events(250, seed=11)
    definition = features.DEFINITIONS[name]
    got = pyplan.compute(definition, records, Settings())
    _assert_rows_equal(got, name, records)
    enriched = {c.name for c in definition.enrich.columns} if definition.enrich else set()
    columns = {c.name for c in definition.table().columns} - enriched - {"computed_at"}
    assert all(set(row) == columns for row in got.values())


def test_the_python_windows_are_sparks_windows(spark: Any) -> None:
    """Tumbling and sliding windows an event falls in, as Spark's window() assigns them."""

    from stream_jobs import pyplan

    spec = features.DEFINITIONS["user_activity_1h"].windows
    assert spec is not None
    times = [datetime(2026, 11, 2, 9, m, s, tzinfo=UTC) for m in (0, 4, 5, 59) for s in (0, 7)]
    frame = spark.createDataFrame([(t,) for t in times], ["event_time"])
    rows = frame.select("event_time", spec.spark_window(Settings()).alias("w")).collect()
    spark_windows: dict[datetime, list[tuple[datetime, datetime]]] = {}
    for r in rows:
        at = r["event_time"].replace(tzinfo=UTC)
        bounds = (r["w"]["start"].replace(tzinfo=UTC), r["w"]["end"].replace(tzinfo=UTC))
        spark_windows.setdefault(at, []).append(bounds)
    for at in times:
        assert pyplan.windows_of(spec, at) == sorted(spark_windows[at]), at
        assert len(spark_windows[at]) == 12


def test_the_shared_live_plan_gives_each_member_its_own_definitions_windows(spark: Any) -> None:
    """The live job computes every fixed-window feature set in one aggregation; split
    back, each member equals the independent oracle, and has its definition's columns."""
    from pyspark.sql import functions as F

    from stream_jobs import shared_windows

    records = _events(250, seed=23)
    members = shared_windows.windowed(sorted(ORACLES))
    assert set(members) == set(ORACLES) - {"user_sessions"}
    plan = shared_windows.Plan.of(members)
    events = _frame(spark, records).dropDuplicates(["event_id"])
    windows = shared_windows.build(events, Settings(), plan).cache()
    # One column for an aggregate members share alike; a set only where it is used.
    assert len(plan.aggs) < sum(len(c) for c in plan.columns.values())
    for name in members:
        one = shared_windows.split(windows, plan, name)
        own = features.DEFINITIONS[name].build(events, Settings())
        assert one.columns == own.columns, name
        _assert_equals_oracle(one.withColumn("computed_at", F.current_timestamp()), name, records)
    windows.unpersist()


def test_the_shared_plan_streams_every_window_once_when_the_watermark_passes_it(
    spark: Any, tmp_path: Any
) -> None:
    """Live, the panes and then the windows are two chained stateful aggregations in
    append mode: each window is emitted once, with the oracle's values, once the
    watermark passes its end, and none before."""
    from pyspark.sql import functions as F

    from stream_jobs import features as job
    from stream_jobs import shared_windows

    records = _events(250, seed=31)
    last = max(r["event_time"] for r in records)
    flush = [  # another user, much later: moves the watermark past every window above
        {
            **records[0],
            "event_id": f"flush-{i}",
            "user_id": 999,
            "product_id": None,
            "event_time": last + timedelta(hours=3, minutes=i),
            "produced_at": last,
        }
        for i in range(2)
    ]
    source = tmp_path / "events"
    for i, part in enumerate((records, flush[:1], flush[1:])):
        _frame(spark, part).coalesce(1).write.parquet(str(source / f"part={i}"))
    schema = _frame(spark, records[:1]).schema
    members = shared_windows.windowed(sorted(ORACLES))
    plan = shared_windows.Plan.of(members)
    stream = (
        spark.readStream.schema(schema)
        .option("maxFilesPerTrigger", 1)
        .option("recursiveFileLookup", "true")
        .parquet(str(source))
    )
    windows = shared_windows.build(job.dedupe(stream, Settings()), Settings(), plan)
    name = f"shared_{uuid.uuid4().hex[:8]}"
    query = (
        windows.writeStream.format("memory")
        .queryName(name)
        .outputMode("append")
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination(300)
    emitted = spark.table(name).cache()
    assert emitted.where(F.col(shared_windows.KEY) == 999).count() == 0, "still open"
    counts = emitted.groupBy(shared_windows.TAG, shared_windows.KEY, "window_start").count()
    assert counts.where("count > 1").count() == 0, "a window emitted twice"
    for member in members:
        one = shared_windows.split(emitted, plan, member)
        _assert_equals_oracle(one.withColumn("computed_at", F.current_timestamp()), member, records)
    emitted.unpersist()


# Every feature table as declared before the definitions derived it: name:type, ? nullable.
TABLES = {
    "user_activity_1m": "user_id:long window_start:timestamptz window_end:timestamptz "
    "events:long page_views:long searches:long cart_adds:long cart_removes:long checkouts:long "
    "distinct_products:int cart_value:decimal(18,2) segment:string? country:string? "
    "max_produced_at:timestamptz computed_at:timestamptz",
    "user_activity_1h": "user_id:long window_start:timestamptz window_end:timestamptz "
    "events:long page_views:long searches:long cart_adds:long cart_removes:long checkouts:long "
    "distinct_products:int cart_value:decimal(18,2) max_produced_at:timestamptz "
    "computed_at:timestamptz",
    "user_sessions": "user_id:long session_start:timestamptz session_end:timestamptz "
    "last_event_at:timestamptz events:long distinct_products:int cart_value:decimal(18,2) "
    "converted:boolean max_produced_at:timestamptz computed_at:timestamptz",
    "product_popularity_5m": "product_id:long window_start:timestamptz window_end:timestamptz "
    "events:long page_views:long cart_adds:long checkouts:long distinct_users:int "
    "max_produced_at:timestamptz computed_at:timestamptz",
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_each_table_is_derived_from_its_definition(spark: Any, name: str) -> None:
    """The table a definition derives has the columns the tables always had, and the
    columns its plan writes (enrichment and write time aside) are the table's, in order."""
    definition = features.DEFINITIONS[name]
    table = definition.table("features")
    got = " ".join(f"{c.name}:{c.type}{'' if c.required else '?'}" for c in table.columns)
    assert got == TABLES[name]
    assert table.identifier == definition.keys
    assert table.partition_by == ((definition.keys[1], "day"),)
    plan = definition.build(_frame(spark, _events(20, seed=3)), Settings()).columns
    enriched = {c.name for c in definition.enrich.columns} if definition.enrich else set()
    assert plan == [c.name for c in table.columns if c.name not in {*enriched, "computed_at"}]


def test_enrichment_is_the_customer_as_of_each_windows_end(spark: Any) -> None:
    """Newest version (updated_at, then LSN) at or before the window's end; none before
    the first version; none after a delete; the same as the plain-Python recomputation."""
    from stream_jobs.enrichment import as_of
    from tests.integration.featurekit import customer_as_of

    t = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    log = [  # customer_id, op, segment, country, updated_at, lsn
        (1, "c", "new", "DE", t, 10),
        (1, "u", "regular", "DE", t + timedelta(minutes=5), 20),
        (1, "u", "vip", "FR", t + timedelta(minutes=5), 30),  # same instant: LSN decides
        (2, "c", "new", "US", t + timedelta(minutes=3), 40),
        (2, "d", "new", "US", t + timedelta(minutes=8), 50),
        (3, "u", "vip", "GB", t + timedelta(minutes=2), 70),  # stamped earlier, logged later
        (3, "c", "new", "GB", t + timedelta(minutes=4), 60),
    ]
    columns = ["customer_id", "op", "segment", "country", "updated_at", "lsn"]
    ends = [t + timedelta(minutes=m) for m in (1, 3, 5, 6, 9)]
    windows = [(u, e - timedelta(minutes=1), e) for u in (1, 2, 3, 4) for e in ends]
    frame = spark.createDataFrame(windows, ["user_id", "window_start", "window_end"])
    got = {
        (r["user_id"], r["window_end"].replace(tzinfo=UTC)): (r["segment"], r["country"])
        for r in as_of(frame, spark.createDataFrame(log, columns)).collect()
    }
    rows = [dict(zip(columns, v, strict=True)) for v in log]
    want = {(u, e): customer_as_of(rows, u, e) for u, _, e in windows}
    assert got == want
    assert want[(1, ends[2])] == ("vip", "FR") and want[(1, ends[1])] == ("new", "DE")
    assert want[(2, ends[0])] == (None, None) and want[(2, ends[4])] == (None, None)
    assert want[(3, ends[1])] == ("vip", "GB") and want[(3, ends[3])] == ("new", "GB")
