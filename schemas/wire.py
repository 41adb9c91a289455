"""The Confluent wire format, and a fast Avro encoder compiled from a schema.

Every Kafka value is ``0x00`` + the 4-byte big-endian registry schema id + the
Avro binary body. :func:`compile_encoder` turns a record schema into a Python
function specialised to it (precomputed enum symbols, table-driven varints), which
writes the same bytes as ``fastavro.schemaless_writer`` several times faster; a
schema it does not specialise (arrays, maps, general unions) falls back to fastavro.
A record that does not fit raises :class:`RecordError` naming the field, before
anything is written.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import struct
from collections.abc import Callable, Mapping
from typing import Any

MAGIC = 0
HEADER_SIZE = 5
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Encoder = Callable[[Mapping[str, Any]], bytes]


class RecordError(ValueError):
    """A record does not fit its schema; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def header(schema_id: int) -> bytes:
    """The 5-byte Confluent wire header for ``schema_id``."""
    return struct.pack(">bI", MAGIC, schema_id)


def split(payload: bytes) -> tuple[int, bytes]:
    """Split a wire-format payload into (schema id, Avro body).

    Raises:
        ValueError: The payload does not start with the magic byte.
    """
    if len(payload) < HEADER_SIZE or payload[0] != MAGIC:
        raise ValueError("not Confluent wire format (missing magic byte 0 + schema id)")
    return struct.unpack(">I", payload[1:HEADER_SIZE])[0], payload[HEADER_SIZE:]


def decode(
    payload: bytes, writer_schema: dict[str, Any], reader_schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Decode a wire-format payload, resolving to ``reader_schema`` when given.

    Args:
        payload: The Kafka value (header + body).
        writer_schema: The schema the body was written with (fetched by its id).
        reader_schema: The schema to read as (Avro schema resolution); defaults to the writer's.

    Returns:
        The record, with logical types decoded (datetimes, Decimals).
    """
    from fastavro import parse_schema, schemaless_reader

    _, body = split(payload)
    writer = parse_schema(writer_schema)
    reader = parse_schema(reader_schema) if reader_schema is not None else None
    record = schemaless_reader(io.BytesIO(body), writer, reader)
    assert isinstance(record, dict)
    return record


# --- varints: tables of every 14-bit group, so most longs are one or two lookups ---
_V1 = tuple(bytes(b) for b in ([i] if i < 128 else [(i & 127) | 128, i >> 7] for i in range(16384)))
_V2 = tuple(bytes([(i & 127) | 128, ((i >> 7) & 127) | 128]) for i in range(16384))
_HIGH: dict[int, bytes] = {}


def _varint(n: int) -> bytes:
    if n < 0x4000:
        return _V1[n]
    if n < 0x10000000:
        return _V2[n & 0x3FFF] + _V1[n >> 14]
    high = n >> 28
    tail = _HIGH.get(high)
    if tail is None:
        if len(_HIGH) > 4096:
            _HIGH.clear()
        tail = _HIGH[high] = _varint(high)
    return _V2[n & 0x3FFF] + _V2[(n >> 14) & 0x3FFF] + tail


def _long(v: int) -> bytes:
    if 0 <= v < 0x2000:
        return _V1[v << 1]
    if v >= 0:
        if v <= 0x7FFFFFFFFFFFFFFF:
            return _varint(v << 1)
    elif v >= -0x8000000000000000:
        return _varint(((-v) << 1) - 1)
    raise OverflowError(f"{v} does not fit a 64-bit long")


def _timestamp(v: Any) -> bytes:
    """A timestamp long; epoch millis of today take the three-lookup path."""
    if v.__class__ is int and 0x10000000 <= v <= 0x7FFFFFFFFFFFFFFF:
        z = v << 1
        high = z >> 28
        tail = _HIGH.get(high)
        if tail is None:
            return _long(v)
        return _V2[z & 0x3FFF] + _V2[(z >> 14) & 0x3FFF] + tail
    return _long(v if v.__class__ is int else _millis(v))


def _int(v: int) -> bytes:
    if -0x80000000 <= v <= 0x7FFFFFFF:
        return _long(v)
    raise OverflowError(f"{v} does not fit a 32-bit int")


def _str(v: str) -> bytes:
    b = v.encode()
    return _varint(len(b) << 1) + b


def _bytes(v: bytes) -> bytes:
    if v.__class__ is not bytes:
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    return _varint(len(v) << 1) + v


def _millis(v: Any) -> int:
    if v.__class__ is int:
        return int(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime; give it a timezone (UTC)")
        delta = v - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise TypeError(f"expected epoch millis or datetime, got {type(v).__name__}")


def _micros(v: Any) -> int:
    if v.__class__ is int:
        return int(v)
    if isinstance(v, dt.datetime):
        return _millis(v.replace(microsecond=0)) * 1000 + v.microsecond
    raise TypeError(f"expected epoch micros or datetime, got {type(v).__name__}")


_DECIMALS: dict[tuple[type, Any, int, int], bytes] = {}


def _decimal(v: Any, precision: int, scale: int) -> bytes:
    """A decimal as Avro bytes (length + unscaled value); equal values encode equally."""
    key = (v.__class__, v, precision, scale)  # the class: 3 == Decimal(3) must not hit
    hit = _DECIMALS.get(key)
    if hit is None:
        unscaled = _decimal_bytes(v, precision, scale)
        hit = _varint(len(unscaled) << 1) + unscaled
        if v.__class__ is not bytes:
            if len(_DECIMALS) > 65536:
                _DECIMALS.clear()
            _DECIMALS[key] = hit
    return hit


def _decimal_bytes(v: Any, precision: int, scale: int) -> bytes:
    """Unscaled two's-complement big-endian, exactly as fastavro writes it."""
    if v.__class__ is bytes:
        return bytes(v)
    if not isinstance(v, decimal.Decimal):
        raise TypeError(f"expected Decimal, got {type(v).__name__}")
    sign, digits, exp = v.as_tuple()
    if not isinstance(exp, int):
        raise ValueError(f"{v} is not a finite decimal")
    if len(digits) > precision:
        raise ValueError(f"{v} exceeds precision {precision}")
    delta = exp + scale
    if delta < 0:
        raise ValueError(f"{v} has more than {scale} decimal places")
    unscaled: int = 0
    for digit in digits:
        unscaled = unscaled * 10 + int(digit)
    unscaled *= 10**delta
    size = (unscaled.bit_length() + 8) // 8
    return (-unscaled if sign else unscaled).to_bytes(size, byteorder="big", signed=True)


class _Compiler:
    """Generates the source of one encoder function; raises _UnsupportedError to fall back."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "_long": _long,
            "_int": _int,
            "_str": _str,
            "_bytes": _bytes,
            "_millis": _millis,
            "_micros": _micros,
            "_decimal": _decimal,
            "_timestamp": _timestamp,
            "_varint": _varint,
            "_pack_f": struct.Struct("<f").pack,
            "_pack_d": struct.Struct("<d").pack,
        }
        self.named: dict[str, Any] = {}
        self.counter = 0

    def const(self, value: Any) -> str:
        self.counter += 1
        name = f"_c{self.counter}"
        self.env[name] = value
        return name

    def expr(self, schema: Any, v: str) -> str:
        """An expression encoding the value named ``v`` (a simple name or subscript)."""
        if isinstance(schema, str):
            if schema in self.named:
                return self.expr(self.named[schema], v)
            schema = {"type": schema}
        if isinstance(schema, list):
            return self.union(schema, v)
        kind, logical = schema["type"], schema.get("logicalType")
        if isinstance(kind, (dict, list)) or kind in self.named:
            return self.expr(kind, v)
        if kind == "null":
            return f'(b"" if {v} is None else _long("not null"))'
        if kind == "boolean":
            return f'(b"\\x01" if {v} is True else b"\\x00" if {v} is False else _long("bool"))'
        if kind == "long" and logical == "timestamp-millis":
            return f"_timestamp({v})"
        if kind == "long" and logical == "timestamp-micros":
            return f"_long(_micros({v}))"
        if kind in ("int", "long") and logical is None:
            return f"_{kind}({v})"
        if kind == "float" and logical is None:
            return f"_pack_f({v})"
        if kind == "double" and logical is None:
            return f"_pack_d({v})"
        if kind == "string" and logical in (None, "uuid"):
            return f"_str({v})" if logical is None else f"_str(str({v}))"
        if kind == "bytes" and logical is None:
            return f"_bytes({v})"
        if kind == "bytes" and logical == "decimal":
            args = f"{int(schema['precision'])}, {int(schema.get('scale', 0))}"
            return f"_decimal({v}, {args})"
        if kind == "enum":
            self.register(schema)
            table = {s: _varint(i << 1) for i, s in enumerate(schema["symbols"])}
            return f"{self.const(table)}[{v}]"
        if kind == "record":
            return self.record(schema, v)
        raise _UnsupportedError(str(kind))

    def register(self, schema: dict[str, Any]) -> None:
        name, namespace = schema["name"], schema.get("namespace")
        self.named[name] = schema
        if namespace:
            self.named[f"{namespace}.{name}"] = schema

    def union(self, branches: list[Any], v: str) -> str:
        if len(branches) == 2 and "null" in branches:
            index = 1 - branches.index("null")
            inner = self.expr(branches[index], v)
            tag_null, tag = _varint(branches.index("null") << 1), _varint(index << 1)
            return f"({tag_null!r} if {v} is None else {tag!r} + {inner})"
        raise _UnsupportedError("union")

    def record(self, schema: dict[str, Any], v: str) -> str:
        self.register(schema)
        parts = []
        for field in schema["fields"]:
            name = field["name"]
            if "default" in field:
                access = f"{v}.get({name!r}, {self.const(field['default'])})"
            else:
                access = f"{v}[{name!r}]"
            parts.append(self.expr(field["type"], access))
        return "b''.join((" + "".join(f"{p}, " for p in parts) + "))"


class _UnsupportedError(Exception):
    pass


def compile_encoder(schema: dict[str, Any], prefix: bytes = b"") -> Encoder:
    """An encoder of records of ``schema``, returning ``prefix`` + the Avro body.

    Args:
        schema: A record schema (parsed JSON, not fastavro-parsed).
        prefix: Bytes put in front of every body, typically :func:`header` of the schema id.

    Returns:
        ``encode(record) -> bytes``. It raises :class:`RecordError` naming the field
        when the record does not fit; nothing is returned for such a record.
    """
    from fastavro import parse_schema

    parsed = parse_schema(schema)
    fields = {f["name"] for f in schema["fields"]}
    compiler = _Compiler()
    try:
        body = compiler.record(schema, "r")
    except _UnsupportedError:
        body = ""
    if body:
        compiler.env["_prefix"] = prefix
        source = f"def _encode(r):\n    return _prefix + {body}\n"
        exec(compile(source, f"<avro encoder {schema.get('name')}>", "exec"), compiler.env)
        fast: Encoder = compiler.env["_encode"]
    else:
        fast = _fastavro_encoder(parsed, prefix)

    def encode(record: Mapping[str, Any]) -> bytes:
        try:
            if len(record) > len(fields):
                raise KeyError("extra")
            return fast(record)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise _record_error(schema, fields, record, exc) from None

    return encode


def _fastavro_encoder(parsed: Any, prefix: bytes) -> Encoder:
    from fastavro import schemaless_writer

    buffer = io.BytesIO()

    def encode(record: Mapping[str, Any]) -> bytes:
        buffer.seek(0)
        buffer.truncate()
        buffer.write(prefix)
        schemaless_writer(buffer, parsed, record)
        return buffer.getvalue()

    return encode


def _record_error(
    schema: dict[str, Any], fields: set[str], record: Mapping[str, Any], exc: Exception
) -> RecordError:
    name = schema.get("name", "record")
    extra = sorted(set(record) - fields)
    if extra:
        return RecordError(extra[0], f"{name}: field '{extra[0]}' is not in the schema")
    problem = first_problem(schema, record)
    if problem is not None:
        return problem
    return RecordError("?", f"{name}: record does not fit the schema: {exc}")


def first_problem(schema: dict[str, Any], record: Mapping[str, Any]) -> RecordError | None:
    """The first field of ``record`` that does not fit ``schema``, as an error naming it.

    Args:
        schema: A record schema.
        record: The record to check.

    Returns:
        None when every field fits.
    """
    from fastavro import parse_schema

    named: dict[str, Any] = {}
    parse_schema(schema, named_schemas=named)
    record_name = schema.get("name", "record")
    for field in schema["fields"]:
        name = field["name"]
        if name not in record and "default" not in field:
            return RecordError(name, f"{record_name}: required field '{name}' is missing")
        value = record.get(name, field.get("default"))
        problem = _field_problem(field["type"], value, named)
        if problem is None:
            continue
        return RecordError(
            name,
            f"{record_name}: field '{name}' = {value!r} does not fit "
            f"{_describe(field['type'])}{problem}",
        )
    for name in record:
        if name not in {f["name"] for f in schema["fields"]}:
            return RecordError(name, f"{record_name}: field '{name}' is not in the schema")
    return None


def _field_problem(field_type: Any, value: Any, named: dict[str, Any]) -> str | None:
    from fastavro import parse_schema
    from fastavro.validation import validate

    try:
        parsed = parse_schema(field_type, named_schemas=dict(named))
        if not validate(value, parsed, raise_errors=False):
            return ""
        _fastavro_encoder(parsed, b"")(value)
    except Exception as exc:  # the writer's own complaint, e.g. decimal scale
        return f" ({exc})"
    if isinstance(field_type, dict) and field_type.get("logicalType") == "decimal":
        return _decimal_problem(field_type, value)
    if isinstance(field_type, list):
        for branch in field_type:
            if isinstance(branch, dict) and branch.get("logicalType") == "decimal":
                return None if value is None else _decimal_problem(branch, value)
    return None


def _decimal_problem(schema: dict[str, Any], value: Any) -> str | None:
    try:
        _decimal_bytes(value, int(schema["precision"]), int(schema.get("scale", 0)))
    except (TypeError, ValueError) as exc:
        return f" ({exc})"
    return None


def _describe(field_type: Any) -> str:
    if isinstance(field_type, list):
        return " | ".join(_describe(t) for t in field_type)
    if isinstance(field_type, dict):
        if field_type.get("logicalType") == "decimal":
            return f"decimal({field_type['precision']},{field_type.get('scale', 0)})"
        if field_type.get("logicalType"):
            return str(field_type["logicalType"])
        if field_type.get("type") == "enum":
            return f"enum {field_type['name']} {field_type['symbols']}"
        return str(field_type.get("name", field_type.get("type")))
    return str(field_type)
