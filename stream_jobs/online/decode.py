"""Click records in Python, refused as the Spark jobs refuse them.

A Kafka record of the click topic becomes an event (the reader schema's fields, logical
types decoded) or a refusal reason with the same wording as ``stream_jobs.avro``'s
(``raw_clicks`` quarantines those; the online view only counts them): tombstone,
framing, unknown schema id, oversized value, undecodable or missing a required field,
null key, an event time too far ahead of when it reached Kafka (or too old). Writer
schemas are fetched from the registry by id once each, and resolved into the subject's
latest schema as the Spark decoder does.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

from kappa import registry
from schemas import wire
from stream_jobs.avro import FUTURE, STALE, Contract


class Decoder:
    """Decodes and checks click records against ``contract`` (see the module docstring)."""

    def __init__(self, registry_url: str, contract: Contract) -> None:
        self.contract = contract
        self.readers = registry.Readers(registry_url, contract.subject)
        self.required = contract.required
        self.future: timedelta | None = contract.max_future_skew
        self.max_age: timedelta | None = contract.max_age

    def __call__(
        self, key: bytes | None, value: bytes | None, timestamp_ms: int
    ) -> tuple[dict[str, Any] | None, str | None]:
        """(event, None), or (None, the reason it is refused)."""
        contract = self.contract
        if value is None:
            return None, "tombstone"
        if len(value) < wire.HEADER_SIZE:
            return None, "too short for a Confluent header"
        if value[0] != wire.MAGIC:
            return None, "bad magic byte (not Confluent wire format)"
        schema_id = int.from_bytes(value[1:5], "big")
        read = self.readers(schema_id)
        if read is None:
            return None, f"unknown schema id {schema_id}"
        if contract.max_value_bytes is not None and len(value) > contract.max_value_bytes:
            return None, f"oversized value ({len(value)} bytes > {contract.max_value_bytes})"
        try:
            record = read(io.BytesIO(value[5:]))
        except Exception:  # fastavro raises many kinds on a bad body
            record = None
        if not isinstance(record, dict) or any(record.get(f) is None for f in self.required):
            return None, (
                f"undecodable body or contract violation (required: {', '.join(self.required)}) "
                f"for schema id {schema_id}"
            )
        if contract.key_required and key is None:
            return None, "null key"
        return self._timely(record, timestamp_ms)

    def _timely(
        self, record: dict[str, Any], timestamp_ms: int
    ) -> tuple[dict[str, Any] | None, str | None]:
        if self.contract.time_field is None:
            return record, None
        event_time = record[self.contract.time_field]
        arrived = min(datetime.fromtimestamp(timestamp_ms / 1000, UTC), datetime.now(UTC))
        if self.future is not None and event_time > arrived + self.future:
            return None, FUTURE
        if self.max_age is not None and arrived > event_time + self.max_age:
            return None, STALE
        return record, None
