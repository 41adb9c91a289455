"""Avro schema resolution rules, to name what breaks when a schema changes.

The registry says *whether* a new schema is compatible; Apicurio's ccompat API
does not say *why*. :func:`backward_problems` applies the Avro resolution rules
(new schema as reader, old schema as writer) and names each breaking field.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "enum", "fixed")


def backward_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``new`` cannot read data written with ``old`` (BACKWARD compatibility).

    Args:
        old: The registered (writer) schema.
        new: The proposed (reader) schema.

    Returns:
        One message per breaking field, naming it; empty when ``new`` reads ``old``.
    """
    return _Resolver().problems(old, new, "")


def forward_problems(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``old`` cannot read data written with ``new`` (FORWARD compatibility)."""
    return _Resolver().problems(new, old, "")


class _Resolver:
    def __init__(self) -> None:
        self.writer_names: dict[str, Any] = {}
        self.reader_names: dict[str, Any] = {}
        self.seen: set[tuple[str, str]] = set()

    def _resolve(self, schema: Any, names: dict[str, Any], namespace: str | None) -> Any:
        if isinstance(schema, str):
            if schema in names:
                return names[schema]
            if namespace and f"{namespace}.{schema}" in names:
                return names[f"{namespace}.{schema}"]
            return {"type": schema}
        if isinstance(schema, dict):
            if isinstance(schema["type"], (dict, list)):
                return self._resolve(schema["type"], names, namespace)
            if schema["type"] in _NAMED:
                ns = schema.get("namespace", namespace)
                names[schema["name"]] = schema
                if ns:
                    names[f"{ns}.{schema['name']}"] = schema
            elif schema["type"] in names:
                return names[schema["type"]]
        return schema

    def problems(self, writer: Any, reader: Any, where: str, ns: str | None = None) -> list[str]:
        w = self._resolve(writer, self.writer_names, ns)
        r = self._resolve(reader, self.reader_names, ns)
        if isinstance(w, list):
            out: list[str] = []
            for branch in w:
                out += self.problems(branch, r, where, ns)
            return out
        if isinstance(r, list):
            if any(not self.problems(w, branch, where, ns) for branch in r):
                return []
            return [f"{_at(where)}{_kind(w)} is not in the new union {_kinds(r)}"]
        wk, rk = w["type"], r["type"]
        if wk != rk:
            if rk in _PROMOTIONS.get(wk, ()):
                return []
            return [f"{_at(where)}type changed from {_kind(w)} to {_kind(r)}"]
        if wk == "record":
            return self._record(w, r, where)
        if wk == "enum":
            lost = [s for s in w["symbols"] if s not in r["symbols"]]
            if lost and "default" not in r:
                return [f"{_at(where)}enum {r['name']} lost symbols {lost} and has no default"]
        if wk == "fixed" and w.get("size") != r.get("size"):
            return [f"{_at(where)}fixed size changed from {w.get('size')} to {r.get('size')}"]
        if wk == "array":
            return self.problems(w["items"], r["items"], f"{where}[]", ns)
        if wk == "map":
            return self.problems(w["values"], r["values"], f"{where}{{}}", ns)
        both_decimal = r.get("logicalType") == w.get("logicalType") == "decimal"
        if both_decimal and (w.get("precision"), w.get("scale", 0)) != (
            r.get("precision"),
            r.get("scale", 0),
        ):
            return [f"{_at(where)}decimal precision/scale changed"]
        return []

    def _record(self, w: dict[str, Any], r: dict[str, Any], where: str) -> list[str]:
        key = (str(w.get("name")), where)
        if key in self.seen:  # recursive types
            return []
        self.seen.add(key)
        if w["name"].split(".")[-1] != r["name"].split(".")[-1] and w["name"] not in r.get(
            "aliases", []
        ):
            return [f"{_at(where)}record renamed from {w['name']} to {r['name']}"]
        writer_fields = {f["name"]: f for f in w["fields"]}
        for f in w["fields"]:
            for alias in f.get("aliases", []):
                writer_fields.setdefault(alias, f)
        out: list[str] = []
        ns = r.get("namespace")
        for field in r["fields"]:
            path = f"{where}.{field['name']}" if where else field["name"]
            source = writer_fields.get(field["name"]) or next(
                (writer_fields[a] for a in field.get("aliases", []) if a in writer_fields), None
            )
            if source is None:
                if "default" not in field:
                    out.append(f"field '{path}' is new and has no default")
                continue
            out += self.problems(source["type"], field["type"], path, ns)
        return out


def _at(where: str) -> str:
    return f"field '{where}': " if where else ""


def _kind(schema: Any) -> str:
    if isinstance(schema, dict):
        if schema["type"] in _NAMED:
            return f"{schema['type']} {schema['name']}"
        return str(schema.get("logicalType") or schema["type"])
    return str(schema)


def _kinds(schemas: list[Any]) -> str:
    return "[" + ", ".join(_kind(s) for s in schemas) + "]"
