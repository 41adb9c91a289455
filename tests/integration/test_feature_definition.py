"""A feature set added in one definition, here in the test: the streaming job computes it,
a backfill replays it, its table is derived, and the values are an independent
recomputation's. Nothing else is touched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from kappa.catalog import load_catalog
from kappa.settings import Settings
from producers.run import simulate
from stream_jobs import backfill as bf
from stream_jobs import features
from stream_jobs.aggregates import COUNT, MAX, Agg, column, of_type
from stream_jobs.feature_sets import DEFINITIONS, FeatureSet, Windows, register
from stream_jobs.runtime import SourceRange
from tests.integration import featureoracle as oracle
from tests.integration.featurekit import SMALL, flush, table_rows, utc, without_computed_at

NAME = "user_searches_10m"


@pytest.fixture
def searches() -> Iterator[FeatureSet]:
    """Searches and the dearest price seen per user in tumbling 10-minute windows."""
    defined = register(
        FeatureSet(
            NAME,
            Windows(
                "user_id",
                timedelta(minutes=10),
                None,
                (
                    Agg("searches", COUNT, of_type("search")),
                    Agg("max_price", MAX, column("price"), "dearest price", "decimal(12,2)"),
                ),
            ),
            "Per user, tumbling 10-minute windows of searches.",
        )
    )
    yield defined
    DEFINITIONS.pop(NAME)


def _oracle(records: list[dict[str, Any]], watermark: Any) -> dict[tuple, dict[str, Any]]:
    ev = oracle.events_frame(records)
    ev = ev.assign(window_start=ev["event_time"].dt.floor("10min"))
    out = {}
    for (user, start), g in ev.groupby(["user_id", "window_start"]):
        end = start + pd.Timedelta(minutes=10)
        if end > watermark:
            continue
        prices = g["price"].dropna()
        out[(int(user), start.to_pydatetime())] = {
            "window_end": end.to_pydatetime(),
            "searches": int((g["event_type"] == "search").sum()),
            "max_price": Decimal(max(prices)) if len(prices) else None,
        }
    return out


def test_a_feature_set_defined_once_streams_backfills_and_has_its_table(
    lake: Settings, feature_topic: str, namespaces: Any, searches: FeatureSet
) -> None:
    topic, ns = feature_topic, namespaces()
    simulate(1500, seed=41, settings=lake, topic=topic, duplicate_fraction=0.03, **SMALL)
    records = oracle.consume(lake, topic)
    flush_id = flush(lake, topic, records)
    instance = f"d_{topic}"

    ctxs = features.run(
        lake, SourceRange(available_now=True), [NAME], topic=topic, instance=instance, namespace=ns
    )

    table = load_catalog(lake).load_table(f"{ns}.{NAME}")
    assert [f.name for f in table.schema().fields] == [c.name for c in searches.columns()]
    assert not table.schema().find_field("max_price").required
    watermark = oracle.flush_time(records) - lake.features.watermark_delay
    want = _oracle([r for r in records if r["event_id"] != flush_id], watermark)
    got = table_rows(lake, f"{ns}.{NAME}")
    assert len(want) > 20 and ctxs[NAME].stats["windows"] == len(want)
    assert {(k, utc(t)) for k, t in got} == set(want)
    for (user, start), row in got.items():
        expect = want[(user, utc(start))]
        assert (utc(row["window_end"]), row["searches"], row["max_price"]) == (
            expect["window_end"],
            expect["searches"],
            expect["max_price"],
        ), (user, start)
    assert any(r["max_price"] is None for r in got.values()), "a window without any price"
    _assert_the_online_view_has_the_same_windows(lake, topic, got)

    record = bf.create(
        lake,
        "earliest",
        feature_sets=[NAME],
        topic=topic,
        live_instance=instance,
        live_namespace=ns,
    )
    try:
        bf.run(lake, record)
        report = bf.verify(lake, record)
        assert report["verdict"] == "identical", report
        assert report["tables"][NAME]["identical"] == len(want)
        staged = without_computed_at(table_rows(lake, f"{record.namespace}.{NAME}"))
        assert staged == without_computed_at(got)
    finally:
        bf.discard(lake, bf.load(lake, record.id))


def _assert_the_online_view_has_the_same_windows(
    lake: Settings, topic: str, got: dict[tuple, dict[str, Any]]
) -> None:
    """The online view's arithmetic (the worker's ``OnlineView``) over the topic, in the
    order of its partitions, keeps the set (keyed by user) and closes the table's windows."""
    from stream_jobs.online.view import OnlineView, online_sets

    assert NAME in online_sets()
    records = oracle.consume(lake, topic)  # with the flush event: it closes every window
    view = OnlineView(
        lake.model_copy(
            update={"online": lake.online.model_copy(update={"retention": timedelta(days=30)})}
        ),
        partitions=3,
    )
    by_partition = [[r for r in records if r["kafka_partition"] == p] for p in range(3)]
    for step in range(0, max(len(p) for p in by_partition), 50):
        for p, mine in enumerate(by_partition):
            view.apply([(p, r) for r in mine[step : step + 50]], now=step / 1e4)
    view.advance(now=1e6)  # every partition idle: the watermark is the flush event's
    online = {(r["user_id"], r["window_start"]): r for r in view.closed(NAME)}
    assert online.keys() == {(k, utc(t)) for k, t in got}
    for (user, start), row in got.items():
        mine = online[(user, utc(start))]
        assert (mine["window_end"], mine["searches"], mine["max_price"]) == (
            utc(row["window_end"]),
            row["searches"],
            row["max_price"],
        ), (user, start)
