"""The Avro contracts, the compiled wire encoder and the compatibility rules (no services)."""

from __future__ import annotations

import copy
import io
import random
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from producers.simulator import SimulationConfig, Simulator
from schemas import wire
from schemas.compat import backward_problems, forward_problems
from schemas.contracts import CLICK_EVENT, CLICK_EVENT_V2, CLICKS_TOPIC, value_subject


def _records(n: int, seed: int = 1) -> list[dict[str, Any]]:
    sim = Simulator(SimulationConfig(seed=seed, customers=200, products=50), encode=lambda r: r)
    return [value for _, value in sim.take(n)]


def test_contracts_have_namespace_and_docs_on_every_field() -> None:
    for contract in (CLICK_EVENT, CLICK_EVENT_V2):
        schema = contract.schema()
        assert schema["namespace"] and schema["doc"]
        assert all(f.get("doc") for f in schema["fields"]), contract.path
    assert CLICK_EVENT.subject == value_subject(CLICKS_TOPIC) == "shop.clicks-value"
    v1_fields = [f["name"] for f in CLICK_EVENT.schema()["fields"]]
    v2_fields = [f["name"] for f in CLICK_EVENT_V2.schema()["fields"]]
    assert v2_fields == [*v1_fields, "referrer"]


def test_compiled_encoder_writes_exactly_what_fastavro_writes() -> None:
    schema = CLICK_EVENT.schema()
    parsed = fastavro.parse_schema(schema)
    encode = wire.compile_encoder(schema, wire.header(42))
    rng = random.Random(5)
    records = _records(3000)
    # push the edges: negative and huge longs, odd decimals, unicode strings
    for r in records[:300]:
        r["user_id"] = rng.randrange(-(2**63), 2**63)
        r["price"] = Decimal(rng.randrange(-(10**10), 10**10)) / 100
        r["search_query"] = "é✓" * rng.randrange(70)
        r["quantity"] = rng.randrange(-(2**31), 2**31)
    for record in records:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, record)
        assert encode(record) == wire.header(42) + buffer.getvalue()


def test_wire_header_round_trip_and_decode() -> None:
    record = _records(1)[0]
    payload = wire.compile_encoder(CLICK_EVENT.schema(), wire.header(123456))(record)
    schema_id, _ = wire.split(payload)
    assert schema_id == 123456 and payload[0] == 0
    decoded = wire.decode(payload, CLICK_EVENT.schema())
    assert decoded["event_id"] == record["event_id"]
    assert decoded["price"] == record["price"]
    assert int(decoded["event_time"].timestamp() * 1000) == record["event_time"]
    with pytest.raises(ValueError, match="magic"):
        wire.split(b"\x01" + payload[1:])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": Decimal("1.234")}, "price"),
        ({"price": 12.5}, "price"),
        ({"device": "fridge"}, "device"),
        ({"event_type": "refund"}, "event_type"),
        ({"user_id": "7"}, "user_id"),
        ({"quantity": 2**40}, "quantity"),
        ({"session_id": None}, "session_id"),
        ({"prise": 3}, "prise"),
        ({"user_id": None}, "user_id"),
    ],
)
def test_a_record_that_does_not_fit_names_the_field(change: dict[str, Any], field: str) -> None:
    record = {**_records(1)[0], **change}
    encode = wire.compile_encoder(CLICK_EVENT.schema(), wire.header(1))
    with pytest.raises(wire.RecordError) as caught:
        encode(record)
    assert caught.value.field == field
    assert f"'{field}'" in str(caught.value)


def test_a_missing_required_field_is_named_but_defaults_fill_in() -> None:
    encode = wire.compile_encoder(CLICK_EVENT.schema(), b"")
    record = _records(1)[0]
    del record["quantity"]  # has a default
    assert (
        fastavro.schemaless_reader(io.BytesIO(encode(record)), CLICK_EVENT.schema())["quantity"]
        == 1
    )
    del record["event_id"]
    with pytest.raises(wire.RecordError, match="required field 'event_id' is missing"):
        encode(record)


def test_v2_adds_an_optional_field_compatible_both_ways() -> None:
    v1, v2 = CLICK_EVENT.schema(), CLICK_EVENT_V2.schema()
    assert backward_problems(v1, v2) == []
    assert forward_problems(v1, v2) == []


def test_breaking_changes_are_named() -> None:
    v1 = CLICK_EVENT.schema()
    bad = copy.deepcopy(v1)
    bad["fields"][3]["type"] = "string"  # user_id long -> string
    bad["fields"].append({"name": "coupon", "type": "string"})  # new, no default
    problems = backward_problems(v1, bad)
    assert any("'user_id'" in p and "long" in p for p in problems)
    assert any("'coupon'" in p and "no default" in p for p in problems)


def test_type_promotion_is_compatible_and_narrowing_is_not() -> None:
    v1 = CLICK_EVENT.schema()
    wider = copy.deepcopy(v1)
    wider["fields"][8]["type"] = "long"  # quantity int -> long
    assert backward_problems(v1, wider) == []
    assert forward_problems(v1, wider)  # old readers cannot read longs as ints


def test_dropping_an_enum_symbol_without_default_is_named() -> None:
    v1 = CLICK_EVENT.schema()
    fewer = copy.deepcopy(v1)
    fewer["fields"][5]["type"]["symbols"].remove("checkout")
    (problem,) = backward_problems(v1, fewer)
    assert "event_type" in problem and "checkout" in problem
