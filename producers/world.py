"""The simulated shop's population: customers with a latent propensity, and a catalog.

Everything is drawn from one seeded ``random.Random``, so a seed fixes the world.
A customer's *propensity* (0..1) is the hidden variable the click stream must
reveal: with signal on it drives how often they come, how long they browse, how
much they put in the cart and how often they check out.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from decimal import Decimal

SEGMENTS = ("new", "regular", "vip")
COUNTRIES = ("DE", "FR", "GB", "US", "NL", "PL", "ES", "IT", "SE", "AT")
_COUNTRY_WEIGHTS = (22, 14, 14, 18, 6, 7, 7, 6, 3, 3)
DEVICES = ("desktop", "mobile", "tablet", "app")
_DEVICE_WEIGHTS = (35, 45, 8, 12)
_FIRST = ("Ada", "Ben", "Chen", "Dara", "Emil", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kim", "Lea")
_LAST = ("Berg", "Costa", "Diaz", "Eker", "Fox", "Gray", "Holm", "Ito", "Kahn", "Lund", "Moss")
# category -> (median price, price spread, search terms)
CATEGORIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "electronics": (180.0, 0.9, ("headphones", "usb c cable", "laptop stand", "charger", "4k tv")),
    "books": (18.0, 0.4, ("novel", "cookbook", "python", "biography", "comics")),
    "fashion": (45.0, 0.6, ("sneakers", "jacket", "dress", "jeans", "scarf")),
    "home": (60.0, 0.8, ("lamp", "pillow", "coffee maker", "rug", "shelf")),
    "toys": (25.0, 0.6, ("lego", "puzzle", "doll", "board game", "rc car")),
    "sports": (55.0, 0.8, ("yoga mat", "running shoes", "dumbbells", "bike light", "tent")),
    "beauty": (22.0, 0.5, ("shampoo", "perfume", "face cream", "lipstick", "sunscreen")),
}
_POPULARITY_TABLE_BITS = 12


@dataclass(slots=True)
class Customer:
    customer_id: int
    email: str
    name: str
    segment: str
    country: str
    signup_ms: int
    updated_ms: int
    propensity: float
    device: str
    key: bytes = b""
    active: bool = False

    def __post_init__(self) -> None:
        self.key = str(self.customer_id).encode()


@dataclass(slots=True)
class Product:
    product_id: int
    name: str
    category: str
    price: Decimal
    updated_ms: int


@dataclass
class World:
    """Customers and products, and how to pick them."""

    rng: random.Random
    customers: list[Customer] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    _activity: list[float] = field(default_factory=list)  # cumulative visit weights
    _popular: list[Product] = field(default_factory=list)
    # The id the next customer gets at the least: raised past the ids a database already
    # has, so sign-ups never take the id of someone an earlier run signed up.
    next_customer_id: int = 1

    def add_customer(self, now_ms: int, signup_ms: int, signal: bool) -> Customer:
        """A new customer (sign-up at ``signup_ms``), appended to the population."""
        rng = self.rng
        propensity = rng.betavariate(0.7, 2.2)
        segment = "vip" if propensity > 0.6 else rng.choice(("new", "regular", "regular"))
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        customer_id = max(self.next_customer_id, len(self.customers) + 1)
        self.next_customer_id = customer_id + 1
        customer = Customer(
            customer_id=customer_id,
            email=f"{first.lower()}.{last.lower()}{customer_id}@example.com",
            name=f"{first} {last}",
            segment=segment,
            country=rng.choices(COUNTRIES, _COUNTRY_WEIGHTS)[0],
            signup_ms=signup_ms,
            updated_ms=now_ms,
            propensity=propensity,
            device=rng.choices(DEVICES, _DEVICE_WEIGHTS)[0],
        )
        self.customers.append(customer)
        # With signal, likely buyers also visit far more often.
        weight = 0.05 + 6.0 * propensity**2 if signal else 1.0
        self._activity.append((self._activity[-1] if self._activity else 0.0) + weight)
        return customer

    def add_product(self, now_ms: int) -> Product:
        rng = self.rng
        category = rng.choice(tuple(CATEGORIES))
        median, spread, terms = CATEGORIES[category]
        price = Decimal(round(median * rng.lognormvariate(0.0, spread), 2)).quantize(
            Decimal("0.01")
        )
        product_id = len(self.products) + 1
        name = f"{rng.choice(terms).title()} {product_id}"
        product = Product(product_id, name, category, max(price, Decimal("0.99")), now_ms)
        self.products.append(product)
        return product

    def build_popularity(self) -> None:
        """A 4096-slot table drawn by Zipf-like popularity: picking is one random index."""
        weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(self.products))]
        order = self.products[:]
        self.rng.shuffle(order)
        slots = 1 << _POPULARITY_TABLE_BITS
        self._popular = self.rng.choices(order, weights, k=slots)

    def popular_product(self) -> Product:
        return self._popular[self.rng.getrandbits(_POPULARITY_TABLE_BITS)]

    def visitor(self) -> Customer:
        """A customer drawn by visit weight (propensity-driven with signal, uniform without)."""
        point = self.rng.random() * self._activity[-1]
        return self.customers[bisect.bisect_right(self._activity, point)]

    def anyone(self) -> Customer:
        return self.customers[self.rng.randrange(len(self.customers))]

    def search_term(self) -> str:
        _, _, terms = CATEGORIES[self.rng.choice(tuple(CATEGORIES))]
        return self.rng.choice(terms)
