"""The simulated shop in simulated time: sessions as a Markov process, orders and OLTP changes.

One seeded ``random.Random`` drives everything and one heap orders everything by
simulated time (session steps, new sessions, late releases, duplicate deliveries,
order status changes, sign-ups, profile updates, re-pricing), so a seed and a
start time fix the whole sequence of events and rows, however fast it is consumed.

A session walks page_view / search / add_to_cart / remove_from_cart / checkout
with transition probabilities set by the customer's latent propensity and the
hour of day. With signal off, the propensity drives nothing and each checkout's
order is booked to a customer drawn at random, so who orders is independent of
what anyone clicked.
"""

from __future__ import annotations

import datetime as dt
import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from producers.world import Customer, Product, World

EVENT_TYPES = ("page_view", "search", "add_to_cart", "remove_from_cart", "checkout")
PAGE_VIEW, SEARCH, ADD, REMOVE, CHECKOUT, EXIT = range(6)
DEFAULT_START = dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.UTC)

# Traffic by hour of day (UTC), and how much more likely a cart is bought then.
_TRAFFIC = (
    0.3,
    0.2,
    0.15,
    0.15,
    0.2,
    0.35,
    0.6,
    0.85,
    1.0,
    1.05,
    1.1,
    1.15,
    1.2,
    1.15,
    1.1,
    1.1,
    1.15,
    1.3,
    1.5,
    1.6,
    1.55,
    1.3,
    0.9,
    0.55,
)
_CONVERSION = tuple(0.85 + 0.3 * (t - 0.15) / 1.45 for t in _TRAFFIC)
_HOUR_MS = 3_600_000
_MEAN_GAP_MS = 14_000.0
_MIN_GAP_MS = 500
# an order's next status, and the mean wait for it
_NEXT_STATUS = {"paid": ("shipped", 3 * _HOUR_MS), "shipped": ("delivered", 36 * _HOUR_MS)}
# heap entry kinds
_STEP, _ARRIVAL, _RELEASE, _DUPLICATE, _ORDER, _SIGNUP, _PROFILE, _REPRICE, _VISIT = range(9)
# uuid4: version nibble 4 and RFC 4122 variant, as uuid.UUID(int=..., version=4) sets them
_UUID_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_BITS = (0x4000 << 64) | (0x8000 << 48)

Encode = Callable[[Mapping[str, Any]], Any]
OltpOp = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class SimulationConfig:
    """The knobs that fix what is simulated (not how fast it is sent)."""

    seed: int = 7
    # The customers and products with their hidden traits; None: drawn from ``seed``. A
    # later run into the same shop keeps the world (same people, same propensities) and
    # changes only ``seed`` (the sessions, event ids, orders).
    world_seed: int | None = None
    customers: int = 2000
    products: int = 400
    start: dt.datetime = DEFAULT_START
    late_fraction: float = 0.0
    duplicate_fraction: float = 0.0
    signal: bool = True
    sessions_per_customer_hour: float = 0.5
    # Clicks per simulated second the shop is scaled to (None: the population's own traffic,
    # which varies by hour). Set, a fixed number of visitors browse at any moment (a closed
    # population: each session that ends is followed by another), already mid-visit at the
    # start, clicking every REAL_TIME_THINK_S on average: the rate holds from the first second.
    click_rate: float | None = None
    # Added to every customer's propensity (capped at 0.99): the same people behave
    # otherwise (more carts, longer sessions) — a shifted feature distribution, for drift.
    shift: float = 0.0

    def __post_init__(self) -> None:
        for name in ("late_fraction", "duplicate_fraction", "shift"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1)")
        if self.customers < 1 or self.products < 1:
            raise ValueError("customers and products must be at least 1")
        if self.start.tzinfo is None:
            raise ValueError("start must carry a timezone (e.g. 2026-01-05T06:00:00+00:00)")
        if self.click_rate is not None:
            if self.click_rate <= 0:
                raise ValueError("click_rate must be > 0")
            if self.customers < customers_for(self.click_rate):
                raise ValueError(
                    f"{self.click_rate:,.0f} clicks/s need at least "
                    f"{customers_for(self.click_rate):,} customers (at most "
                    f"{ACTIVE_SHARE:.0%} browsing at once); give more or leave the default"
                )


# The closed population of a rate-scaled shop: mean seconds between two clicks of a visitor
# (think time), and the most of the customers browsing at one moment.
REAL_TIME_THINK_S = 2.0
ACTIVE_SHARE = 0.3


def visitors_for(click_rate: float) -> int:
    """How many visitors browse at once to make ``click_rate`` clicks per second."""
    return max(1, math.ceil(click_rate * REAL_TIME_THINK_S))


def customers_for(click_rate: float) -> int:
    """The least population that keeps ``click_rate`` coherent (one session per customer)."""
    return math.ceil(visitors_for(click_rate) / ACTIVE_SHARE)


@functools.lru_cache(maxsize=4096)
def transition_rows(propensity: float, conversion: float) -> tuple[tuple[float, ...], ...]:
    """Cumulative transition probabilities, one row per state, over the next states.

    Columns are page_view, search, add_to_cart, remove_from_cart, checkout, exit.
    """
    p = propensity
    add = 0.02 + 0.40 * p
    leave = max(0.04, 0.30 - 0.24 * p)
    buy = min(0.8, (0.03 + 0.80 * p) * conversion)
    rows = (
        (0.0, 0.16, add, 0.0, 0.0, leave),  # from page_view
        (0.0, 0.10, add * 0.7, 0.0, 0.0, leave),  # from search
        (0.0, 0.05, 0.10 + 0.1 * p, 0.10 - 0.06 * p, buy, leave * 0.6),  # from add_to_cart
        (0.0, 0.05, 0.10, 0.05, buy * 0.5, leave * 1.5),  # from remove_from_cart
    )
    out = []
    for row in rows:
        others = sum(row[1:])
        scale = min(1.0, 0.9 / others)  # page_view keeps at least 10%
        probs = (1.0 - others * scale, *(x * scale for x in row[1:]))
        out.append(tuple(itertools.accumulate(probs)))
    return tuple(out)


@dataclass(slots=True)
class Session:
    customer: Customer
    session_id: str
    rows: tuple[tuple[float, ...], ...]
    state: int
    cart: list[tuple[Product, int]] = field(default_factory=list)
    product: Product | None = None


def millis(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def as_datetime(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


class Simulator:
    """Produces the shop's events in simulated-time order; see :meth:`take`.

    Args:
        config: What to simulate.
        encode: Turns a click record into what is returned (wire bytes for Kafka,
            or identity for analysis); called when the event is emitted.
        first_order_id: The id of the first order placed (the next free id of the OLTP
            table the orders go to).
        first_signup_id: The least id a customer signing up during the run gets (the next
            free id of the OLTP customers table); the initial population keeps ids 1..n.
    """

    def __init__(
        self,
        config: SimulationConfig,
        encode: Encode,
        first_order_id: int = 1,
        first_signup_id: int = 1,
    ) -> None:
        self.config = config
        self.encode = encode
        self.rng = rng = random.Random(config.seed)
        own_world = config.world_seed is not None
        world_rng = random.Random(config.world_seed) if own_world else rng
        self.world = World(world_rng)
        self.now = millis(config.start)
        self.heap: list[tuple[int, int, int, Any]] = []
        self.seq = itertools.count()
        self.counts = [0] * len(EVENT_TYPES)
        self.late = self.duplicates = 0
        self.orders = 0
        # Deliveries whose event time lies beyond ``ahead_limit`` (epoch millis; the caller
        # moves it with the wall clock): the events a live feature job will refuse.
        self.ahead_limit: int | None = None
        self.ahead = 0
        self.oltp: list[OltpOp] = []
        # Order ids are the OLTP table's key: a run into a database that already has orders
        # continues after them (like a sequence) instead of overwriting them.
        self._order_ids = itertools.count(first_order_id)
        # The mean time between a visitor's clicks beyond the fixed 500 ms.
        self.gap_ms = (
            _MEAN_GAP_MS if config.click_rate is None else REAL_TIME_THINK_S * 1000 - _MIN_GAP_MS
        )
        # The real moment of sending, for produced_at (epoch millis); None: the simulated time.
        self.clock: Callable[[], int] | None = None
        self._populate(world_rng)
        self.world.next_customer_id = max(first_signup_id, self.world.next_customer_id)
        if own_world:  # who visits, what they view: the run's draws, in the fixed world
            self.world.rng = rng
        if config.click_rate is not None:  # every visitor already browsing, each next click
            for _ in range(visitors_for(config.click_rate)):  # as far off as in the long run
                self._start_session(self.now, self.now + self._residual_think())

    # --- setup -----------------------------------------------------------------------------
    def _populate(self, world_rng: random.Random) -> None:
        cfg, now = self.config, self.now
        for _ in range(cfg.products):
            self._op_product(self.world.add_product(now))
        self.world.build_popularity()
        two_years = 730 * 86_400_000
        for _ in range(cfg.customers):
            signup = now - world_rng.randrange(two_years)
            self._op_customer(self.world.add_customer(signup, signup, cfg.signal))
        hourly = cfg.customers / _HOUR_MS
        if cfg.click_rate is None:
            self._schedule_poisson(_ARRIVAL, hourly * cfg.sessions_per_customer_hour)
        self._schedule_poisson(_SIGNUP, hourly * 0.01)
        self._schedule_poisson(_PROFILE, hourly * 0.02)
        self._schedule_poisson(_REPRICE, cfg.products / _HOUR_MS * 0.01)

    def _push(self, when: int, kind: int, obj: Any) -> None:
        heapq.heappush(self.heap, (when, next(self.seq), kind, obj))

    def _schedule_poisson(self, kind: int, per_ms: float, after: int | None = None) -> None:
        when = self.now if after is None else after
        if kind == _ARRIVAL:
            per_ms *= _TRAFFIC[(when // _HOUR_MS) % 24]
        self._push(when + int(self.rng.expovariate(per_ms)) + 1, kind, per_ms)

    # --- the event loop ----------------------------------------------------------------------
    def take(self, n: int, until: int | None = None) -> list[tuple[bytes, Any]]:
        """The next ``n`` deliveries to the click topic, as (key, encoded value) pairs.

        Duplicate deliveries and late releases are part of the sequence. OLTP changes
        up to the last delivery's time accumulate in :attr:`oltp`.

        Args:
            n: At most this many deliveries.
            until: Stop before simulated time passes this (epoch millis), if given.
        """
        out: list[tuple[bytes, Any]] = []
        heap, pop, rng = self.heap, heapq.heappop, self.rng
        late, dup = self.config.late_fraction, self.config.duplicate_fraction
        counts = self.counts
        limit = self.ahead_limit if self.ahead_limit is not None else 1 << 62
        while len(out) < n:
            if until is not None and heap[0][0] > until:
                break
            when, _, kind, obj = pop(heap)
            self.now = when
            if kind == _STEP:
                record = self._step(obj, when)
                if late and rng.random() < late:
                    self.late += 1
                    self._push(when + int(rng.expovariate(1 / 90_000)) + 1, _RELEASE, record)
                    continue
            elif kind == _RELEASE:
                record = obj
                record["value"]["produced_at"] = when if self.clock is None else self.clock()
            elif kind == _DUPLICATE:
                out.append(obj)
                self.duplicates += 1
                self.ahead += when > limit  # a copy is sent within seconds of its original
                continue
            else:
                self._background(kind, obj, when)
                continue
            delivery = (record["key"], self.encode(record["value"]))
            out.append(delivery)
            counts[record["type"]] += 1
            self.ahead += record["value"]["event_time"] > limit
            if dup and rng.random() < dup:
                self._push(when + int(rng.expovariate(1 / 2_000)) + 1, _DUPLICATE, delivery)
        return out

    def _step(self, s: Session, when: int) -> dict[str, Any]:
        """Emit the session's current event, then move it to its next state."""
        rng, state, customer = self.rng, s.state, s.customer
        product_id: int | None = None
        price: Decimal | None = None
        quantity, query = 1, None
        if state == PAGE_VIEW:
            s.product = product = self.world.popular_product()
            product_id, price = product.product_id, product.price
        elif state == SEARCH:
            query = self.world.search_term()
        elif state == ADD:
            product = s.product or self.world.popular_product()
            quantity = 1 if rng.random() < 0.8 else 2
            s.cart.append((product, quantity))
            product_id, price = product.product_id, product.price
        elif state == REMOVE:
            product, quantity = s.cart.pop(rng.randrange(len(s.cart)))
            product_id, price = product.product_id, product.price
        else:
            quantity = sum(q for _, q in s.cart)
            price = sum((p.price * q for p, q in s.cart), Decimal("0.00"))
            self._place_order(s, when, quantity, price)
        value = {
            "event_id": _uuid4(rng.getrandbits(128)),
            "event_time": when,
            "produced_at": when if self.clock is None else self.clock(),
            "user_id": customer.customer_id,
            "session_id": s.session_id,
            "event_type": EVENT_TYPES[state],
            "product_id": product_id,
            "price": price,
            "quantity": quantity,
            "search_query": query,
            "device": customer.device,
        }
        if state == CHECKOUT:
            self._end(s, when)
        else:
            self._advance(s, when)
        return {"key": customer.key, "value": value, "type": state}

    def _advance(self, s: Session, when: int) -> None:
        u = self.rng.random()
        row = s.rows[s.state]
        nxt = 0
        while nxt < 5 and u >= row[nxt]:
            nxt += 1
        if nxt == EXIT:
            self._end(s, when)
            return
        if nxt in (REMOVE, CHECKOUT) and not s.cart:
            nxt = PAGE_VIEW
        s.state = nxt
        self._push(when + self._think(), _STEP, s)

    def _think(self) -> int:
        return int(self.rng.expovariate(1 / self.gap_ms)) + _MIN_GAP_MS

    def _residual_think(self) -> int:
        """The wait for a visitor's next click seen from a random moment (the equilibrium
        residual of ``_think``): so the visitors present at the start click at the long-run
        rate from the first second instead of in a burst."""
        rng, mean = self.rng, self.gap_ms + _MIN_GAP_MS
        if rng.random() < _MIN_GAP_MS / mean:
            return rng.randrange(_MIN_GAP_MS)
        return _MIN_GAP_MS + int(rng.expovariate(1 / self.gap_ms))

    def _end(self, s: Session, when: int) -> None:
        s.customer.active = False
        if self.config.click_rate is not None:  # closed population: the next visitor comes
            self._push(when + self._think(), _VISIT, None)

    def _start_session(self, when: int, first_at: int | None = None) -> None:
        customer = self.world.visitor()
        if self.config.click_rate is not None:
            while customer.active:  # ACTIVE_SHARE keeps a free customer a few draws away
                customer = self.world.visitor()
        if customer.active:  # already browsing: one session per customer at a time
            return
        customer.active = True
        propensity = customer.propensity if self.config.signal else 0.25
        propensity = round(min(0.99, propensity + self.config.shift), 2)
        conversion = _CONVERSION[(when // _HOUR_MS) % 24]
        session_id = f"{self.rng.getrandbits(64):016x}"
        first = SEARCH if self.rng.random() < 0.3 else PAGE_VIEW
        session = Session(customer, session_id, transition_rows(propensity, conversion), first)
        at = when + self.rng.randrange(1, 1000) if first_at is None else first_at
        self._push(at, _STEP, session)

    # --- OLTP ---------------------------------------------------------------------------------
    def _background(self, kind: int, obj: Any, when: int) -> None:
        rng, world = self.rng, self.world
        if kind == _ORDER:
            self._order_change(obj, when)
            return
        if kind == _VISIT:
            self._start_session(when, first_at=when)
            return
        if kind == _ARRIVAL:
            self._start_session(when)
        elif kind == _SIGNUP:
            self._op_customer(world.add_customer(when, when, self.config.signal))
        elif kind == _PROFILE:
            customer = world.anyone()
            if rng.random() < 0.5:
                customer.country = rng.choice(("DE", "FR", "GB", "US", "NL"))
            elif customer.segment != "vip":
                customer.segment = "regular" if customer.segment == "new" else "vip"
            customer.updated_ms = when
            self._op_customer(customer)
        elif kind == _REPRICE:
            product = world.products[rng.randrange(len(world.products))]
            factor = Decimal(str(round(rng.uniform(0.8, 1.15), 2)))
            product.price = max(Decimal("0.99"), (product.price * factor).quantize(Decimal("0.01")))
            product.updated_ms = when
            self._op_product(product)
        self._schedule_poisson(
            kind,
            float(obj) / (_TRAFFIC[(when // _HOUR_MS) % 24] if kind == _ARRIVAL else 1.0),
            when,
        )

    def _place_order(self, s: Session, when: int, items: int, total: Decimal) -> None:
        order_id = next(self._order_ids)
        customer, session_id = s.customer, s.session_id
        if not self.config.signal:  # who orders no longer follows what anyone clicked
            customer, session_id = self.world.anyone(), f"{self.rng.getrandbits(64):016x}"
        self.orders += 1
        ts = as_datetime(when)
        self.oltp.append(
            ("order", (order_id, customer.customer_id, session_id, "placed", items, total, ts, ts))
        )
        if self.rng.random() < 0.06:
            self._push(
                when + int(self.rng.expovariate(1 / 1_200_000)) + 1, _ORDER, (order_id, "cancelled")
            )
        else:
            self._push(
                when + int(self.rng.expovariate(1 / 240_000)) + 1, _ORDER, (order_id, "paid")
            )

    def _order_change(self, change: tuple[int, str], when: int) -> None:
        order_id, status = change
        if status == "deleted":
            self.oltp.append(("order_delete", (order_id,)))
            return
        self.oltp.append(("order_status", (status, as_datetime(when), order_id)))
        if status in _NEXT_STATUS:
            nxt, mean = _NEXT_STATUS[status]
            self._push(when + int(self.rng.expovariate(1 / mean)) + 1, _ORDER, (order_id, nxt))
        elif status == "cancelled" and self.rng.random() < 0.4:
            self._push(
                when + int(self.rng.expovariate(1 / (2 * _HOUR_MS))) + 1,
                _ORDER,
                (order_id, "deleted"),
            )

    def _op_customer(self, c: Customer) -> None:
        self.oltp.append(
            (
                "customer",
                (
                    c.customer_id,
                    c.email,
                    c.name,
                    c.segment,
                    c.country,
                    as_datetime(c.signup_ms),
                    as_datetime(c.updated_ms),
                ),
            )
        )

    def _op_product(self, p: Product) -> None:
        self.oltp.append(
            ("product", (p.product_id, p.name, p.category, p.price, as_datetime(p.updated_ms)))
        )

    def drain_oltp(self) -> list[OltpOp]:
        """The OLTP changes accumulated so far, in simulated-time order (and forget them)."""
        ops, self.oltp = self.oltp, []
        return ops

    @property
    def by_type(self) -> dict[str, int]:
        return dict(zip(EVENT_TYPES, self.counts, strict=True))


def _uuid4(n: int) -> str:
    """``str(uuid.UUID(int=n, version=4))``, without building the UUID object."""
    h = f"{(n & _UUID_MASK) | _UUID_BITS:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
