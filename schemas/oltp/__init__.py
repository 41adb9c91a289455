"""The shop's OLTP DDL (``shop.sql``): the contract between the simulator and Debezium."""

from __future__ import annotations

from pathlib import Path

SHOP_DDL = Path(__file__).with_name("shop.sql")


def shop_ddl() -> str:
    """The idempotent DDL of the ``shop`` database's tables."""
    return SHOP_DDL.read_text()
