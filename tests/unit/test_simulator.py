"""The simulated shop without services: determinism, the Markov process, the signal."""

from __future__ import annotations

import collections
import itertools
import random
import uuid
from typing import Any

import pytest

from producers.simulator import (
    EVENT_TYPES,
    SimulationConfig,
    Simulator,
    _uuid4,
    customers_for,
    millis,
    transition_rows,
)
from schemas import wire
from schemas.contracts import CLICK_EVENT


def _run(n: int, **knobs: Any) -> tuple[Simulator, list[tuple[bytes, Any]]]:
    sim = Simulator(SimulationConfig(**{"customers": 300, "products": 80, **knobs}), lambda r: r)
    return sim, sim.take(n)


def test_same_seed_same_events_and_rows_different_seed_different() -> None:
    encode = wire.compile_encoder(CLICK_EVENT.schema(), wire.header(9))
    a = Simulator(SimulationConfig(seed=11, late_fraction=0.1, duplicate_fraction=0.05), encode)
    b = Simulator(SimulationConfig(seed=11, late_fraction=0.1, duplicate_fraction=0.05), encode)
    # batch sizes must not matter: only the seed does
    first = a.take(3000) + a.take(1000)
    second = [d for _ in range(8) for d in b.take(500)]
    assert first == second
    assert a.drain_oltp() == b.drain_oltp()
    c = Simulator(SimulationConfig(seed=12), encode)
    assert c.take(100) != first[:100]


def test_event_ids_are_uuid4_from_the_seeded_rng() -> None:
    rng = random.Random(3)
    for _ in range(500):
        n = rng.getrandbits(128)
        assert _uuid4(n) == str(uuid.UUID(int=n, version=4))
    _, out = _run(2000)
    ids = [v["event_id"] for _, v in out]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids)


@pytest.mark.parametrize("propensity", [0.0, 0.3, 1.0])
def test_transition_rows_are_distributions(propensity: float) -> None:
    for row in transition_rows(propensity, 1.0):
        assert all(b >= a for a, b in itertools.pairwise(row))
        assert row[-1] == pytest.approx(1.0)
        assert row[0] > 0


def test_higher_propensity_browses_longer_and_buys_more() -> None:
    low, high = transition_rows(0.05, 1.0), transition_rows(0.9, 1.0)

    def prob(rows: tuple[tuple[float, ...], ...], state: int, nxt: int) -> float:
        return rows[state][nxt] - (rows[state][nxt - 1] if nxt else 0.0)

    assert prob(high, 0, 2) > 3 * prob(low, 0, 2)  # page_view -> add_to_cart
    assert prob(high, 2, 4) > 5 * prob(low, 2, 4)  # add_to_cart -> checkout
    assert prob(high, 0, 5) < prob(low, 0, 5)  # leaves less often


def test_sessions_follow_the_funnel() -> None:
    sim, out = _run(20000)
    sessions: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for key, value in out:
        assert key == str(value["user_id"]).encode()
        sessions[value["session_id"]].append(value)
    checkouts = 0
    for events in sessions.values():
        assert len({e["user_id"] for e in events}) == 1
        times = [e["event_time"] for e in events]
        assert times == sorted(times)
        cart = 0
        for e in events:
            kind = e["event_type"]
            if kind == "add_to_cart":
                cart += e["quantity"]
            elif kind == "remove_from_cart":
                assert cart > 0
                cart -= e["quantity"]
            elif kind == "checkout":
                assert e["quantity"] == cart > 0 and e["price"] > 0
                assert e is events[-1]  # a checkout ends the session
                checkouts += 1
            elif kind == "search":
                assert e["search_query"] and e["product_id"] is None
    assert checkouts == sim.orders > 0
    assert sum(sim.by_type.values()) == len(out)
    assert set(sim.by_type) == set(EVENT_TYPES) and all(sim.by_type.values())


def test_orders_reference_customers_and_products_written_before_them() -> None:
    sim, out = _run(15000)
    customers: set[int] = set()
    products: set[int] = set()
    orders: set[int] = set()
    for kind, row in sim.drain_oltp():
        if kind == "customer":
            customers.add(row[0])
        elif kind == "product":
            products.add(row[0])
        elif kind == "order":
            assert row[1] in customers
            orders.add(row[0])
        elif kind == "order_status":
            assert row[2] in orders and row[0] in {"paid", "shipped", "delivered", "cancelled"}
        elif kind == "order_delete":
            orders.remove(row[0])
    assert orders
    assert {v["product_id"] for _, v in out if v["product_id"] is not None} <= products


def test_late_events_and_duplicates() -> None:
    sim, out = _run(20000, late_fraction=0.1, duplicate_fraction=0.05)
    values = [v for _, v in out]
    late = [v for v in values if v["produced_at"] > v["event_time"]]
    assert 0.05 < len(late) / len(values) < 0.15
    times = [v["event_time"] for v in values]
    assert any(b < a for a, b in itertools.pairwise(times))  # out of order
    ids = collections.Counter(v["event_id"] for v in values)
    duplicated = sum(n - 1 for n in ids.values())
    assert duplicated == sim.duplicates and 0.02 < duplicated / len(values) < 0.08


def test_start_time_and_config_validation() -> None:
    _sim, out = _run(10)
    assert out[0][1]["event_time"] >= millis(SimulationConfig().start)
    with pytest.raises(ValueError, match="late_fraction"):
        SimulationConfig(late_fraction=1.5)
    with pytest.raises(ValueError, match="timezone"):
        SimulationConfig(start=SimulationConfig().start.replace(tzinfo=None))


def _auc(scores: list[float], labels: list[int]) -> float:
    ranked = sorted(zip(scores, labels, strict=True))
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += (i + j + 1) / 2 * sum(label for _, label in ranked[i:j])
        i = j
    positives = sum(labels)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * (len(labels) - positives))


def _click_auc(signal: bool) -> float:
    """AUC of a crude click score (last hour's cart adds and views) for 'orders in 30 min'."""
    sim, out = _run(40000, customers=400, seed=5, signal=signal)
    clicks: dict[int, list[tuple[int, str]]] = collections.defaultdict(list)
    for _, v in out:
        clicks[v["user_id"]].append((v["event_time"], v["event_type"]))
    orders: dict[int, list[int]] = collections.defaultdict(list)
    for kind, row in sim.drain_oltp():
        if kind == "order":
            orders[row[1]].append(millis(row[6]))
    t0, t1 = out[0][1]["event_time"] + 3_600_000, out[-1][1]["event_time"] - 1_800_000
    rng = random.Random(0)
    scores, labels = [], []
    for _ in range(8000):
        user, t = rng.randrange(1, 401), rng.randrange(t0, t1)
        past = [kind for ts, kind in clicks[user] if t - 3_600_000 <= ts < t]
        scores.append(3 * past.count("add_to_cart") + len(past))
        labels.append(int(any(t < o <= t + 1_800_000 for o in orders[user])))
    return _auc(scores, labels)


def test_clicks_predict_orders_only_with_signal() -> None:
    assert _click_auc(signal=True) >= 0.70
    assert _click_auc(signal=False) <= 0.60


def test_order_ids_start_where_told_and_nothing_else_changes() -> None:
    config = SimulationConfig(seed=5, customers=200, products=50)
    a, b = Simulator(config, lambda r: r), Simulator(config, lambda r: r, first_order_id=1001)
    assert a.take(4000) == b.take(4000)
    ops_a, ops_b = a.drain_oltp(), b.drain_oltp()
    ids_b = [row[0] for kind, row in ops_b if kind == "order"]
    assert ids_b and ids_b[0] == 1001 and ids_b == list(range(1001, 1001 + len(ids_b)))
    shifted = [(kind, (row[0] + 1000, *row[1:]) if kind == "order" else row) for kind, row in ops_a]
    order_id_last = {"order_status": -1, "order_delete": -1}
    shifted = [
        (kind, (*row[:-1], row[-1] + 1000) if kind in order_id_last else row)
        for kind, row in shifted
    ]
    assert shifted == ops_b


def test_sign_ups_take_ids_after_the_ones_in_use_and_nothing_else_changes() -> None:
    config = SimulationConfig(seed=5, customers=200, products=50)
    a, b = Simulator(config, lambda r: r), Simulator(config, lambda r: r, first_signup_id=5001)
    clicks_a, clicks_b = a.take(6000), b.take(6000)
    ops_a, ops_b = a.drain_oltp(), b.drain_oltp()
    signups = sorted({r[0] for k, r in ops_a if k == "customer" and r[0] > 200})
    assert signups and signups == list(range(201, 201 + len(signups)))
    moved = {old: 5001 + k for k, old in enumerate(signups)}

    def renamed(user: int) -> int:
        return moved.get(user, user)

    def renumbered(op: tuple[str, tuple[Any, ...]]) -> tuple[str, tuple[Any, ...]]:
        kind, row = op
        if kind == "customer" and row[0] in moved:
            new = moved[row[0]]
            return kind, (new, row[1].replace(f"{row[0]}@", f"{new}@"), *row[2:])
        if kind == "order":
            return kind, (row[0], renamed(row[1]), *row[2:])
        return op

    assert [renumbered(op) for op in ops_a] == ops_b
    assert any(v["user_id"] in moved for _, v in clicks_a)  # the newcomers shop, too
    # (the Kafka key is the user id, too)
    assert [
        (str(renamed(v["user_id"])).encode(), {**v, "user_id": renamed(v["user_id"])})
        for _, v in clicks_a
    ] == clicks_b


def test_a_world_seed_keeps_the_people_and_the_seed_changes_the_traffic() -> None:
    def traits(sim: Simulator) -> list[tuple[Any, ...]]:
        people = [(c.customer_id, c.propensity, c.segment, c.country) for c in sim.world.customers]
        return people + [(p.product_id, p.price, p.name) for p in sim.world.products]

    config = SimulationConfig(seed=1, world_seed=40, customers=200, products=50)
    a = Simulator(config, lambda r: r)
    b = Simulator(SimulationConfig(seed=2, world_seed=40, customers=200, products=50), lambda r: r)
    world = traits(a)
    assert traits(b) == world
    # (the run then changes the world: sign-ups, profile edits, repricing)
    ids_a = {v["event_id"] for _, v in a.take(2000)}
    ids_b = {v["event_id"] for _, v in b.take(2000)}
    assert not ids_a & ids_b
    assert traits(Simulator(config, lambda r: r)) == world
    # Without a world seed the seed draws the world: another seed, other people.
    c = Simulator(SimulationConfig(seed=2, customers=200, products=50), lambda r: r)
    assert traits(c) != world


def test_deliveries_ahead_of_the_limit_are_counted_exactly() -> None:
    config = SimulationConfig(seed=5, customers=300, products=80, late_fraction=0.1)
    sim = Simulator(config, lambda r: r)
    limit = sim.now + 3_600_000  # one simulated hour after the start
    sim.ahead_limit = limit
    out = sim.take(3000)
    # An independent count over what was delivered; late releases carry their own time.
    want = sum(1 for _, value in out if value["event_time"] > limit)
    assert sim.now > limit and 0 < want < len(out) and sim.late
    assert sim.ahead == want
    unlimited = Simulator(config, lambda r: r)
    unlimited.take(3000)
    assert unlimited.ahead == 0


@pytest.mark.parametrize("rate", [200.0, 1000.0])
def test_a_rate_scaled_shop_clicks_at_its_rate_from_the_first_second(rate: float) -> None:
    """Every 10 s of simulated time, from the start on, holds rate x 10 clicks (+-5 %),
    with sessions as coherent as the natural shop's: one at a time per customer."""
    config = SimulationConfig(seed=5, customers=customers_for(rate), click_rate=rate)
    sim = Simulator(config, lambda r: r)
    start = sim.now
    out = sim.take(int(rate * 1000), until=start + 89_999)
    per_10s = collections.Counter((v["event_time"] - start) // 10_000 for _, v in out)
    assert sorted(per_10s) == list(range(9))
    for window, n in per_10s.items():
        assert abs(n / (rate * 10) - 1) < 0.05, (window, n)
    spans: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
    by_session = collections.defaultdict(list)
    for _, v in out:
        by_session[(v["user_id"], v["session_id"])].append(v["event_time"])
    for (user, _), times in by_session.items():
        spans[user].append((min(times), max(times)))
    for user_spans in spans.values():  # a customer's sessions never overlap
        user_spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(user_spans))
    assert sim.orders > 0


def test_a_rate_needs_its_population_and_the_natural_shop_is_unchanged() -> None:
    with pytest.raises(ValueError, match="5,000 clicks/s need at least 33,334 customers"):
        SimulationConfig(customers=2000, click_rate=5000)
    with pytest.raises(ValueError, match="click_rate must be > 0"):
        SimulationConfig(click_rate=0)
    assert customers_for(5000) == 33_334
    # the closed population is opt-in: the default shop's sequence is what it was
    a, b = (
        Simulator(SimulationConfig(seed=3), lambda r: r),
        Simulator(SimulationConfig(seed=3), lambda r: r),
    )
    assert a.take(500) == b.take(500)
    assert a.clock is None


def test_a_clock_stamps_produced_at_with_the_moment_of_sending() -> None:
    sim = Simulator(SimulationConfig(seed=4, late_fraction=0.2), lambda r: r)
    sim.clock = lambda: 42
    assert {v["produced_at"] for _, v in sim.take(2000)} == {42}


def test_a_shift_moves_the_click_mix_of_the_same_people() -> None:
    """``shift`` raises every propensity: more of the clicks are cart adds (the features'
    distribution moves, which ``kappa drift`` measures); the world stays the same."""

    def cart_share(shift: float) -> float:
        _, out = _run(20_000, seed=5, shift=shift)
        kinds = [value["event_type"] for _, value in out]
        return kinds.count("add_to_cart") / len(kinds)

    plain, shifted = cart_share(0.0), cart_share(0.4)
    assert shifted > plain * 1.25, (plain, shifted)  # 0.176 -> 0.240 with this seed
    with pytest.raises(ValueError, match="shift"):
        SimulationConfig(shift=1.0)
