"""A deterministic instance of a JSON schema: what the simulator answers for tools and formats."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
MAX_DEPTH = 12
# Below this depth optional properties and array items are left out.
SHALLOW = 4

# Strings in a known `format` must look the part, or strict validators reject them.
FORMATS = {
    "date-time": "2026-01-01T12:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000001",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "hostname": "example.com",
    "duration": "P1D",
}


def instance(schema: Any, root: JSON | None = None, name: str = "value", depth: int = 0) -> Any:
    """A value that validates against `schema` ($ref/$defs, enums, nesting); the same each time."""
    if not isinstance(schema, dict):
        return "example"
    root = schema if root is None else root
    if depth > MAX_DEPTH:
        return None
    if "$ref" in schema:
        return instance(resolve(schema["$ref"], root), root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            options = [o for o in schema[key] if not (isinstance(o, dict) and _is_null(o))]
            if depth >= SHALLOW and len(options) < len(schema[key]):
                return None  # deep down, a nullable branch ends the recursion
            return instance((options or schema[key])[0], root, name, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: JSON = {}
        for each in schema["allOf"]:
            part = (
                resolve(each["$ref"], root) if isinstance(each, dict) and "$ref" in each else each
            )
            if isinstance(part, dict):
                _merge(merged, part)
        _merge(merged, {k: v for k, v in schema.items() if k != "allOf"})
        return instance(merged, root, name, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    return _of_type(kind, schema, root, name, depth)


def _of_type(kind: str, schema: JSON, root: JSON, name: str, depth: int) -> Any:
    if kind == "object":
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        # Deep down, only what is required: recursive schemas (trees) must end somewhere.
        return {
            key: instance(sub, root, key, depth + 1)
            for key, sub in properties.items()
            if isinstance(sub, dict) and (depth < SHALLOW or key in required)
        }
    if kind == "array":
        items = schema.get("items")
        if isinstance(schema.get("prefixItems"), list):
            return [instance(s, root, name, depth + 1) for s in schema["prefixItems"]]
        least = int(schema.get("minItems", 0))
        count = least if depth >= SHALLOW else max(1, least)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [instance(items or {}, root, name, depth + 1) for _ in range(count)]
    if kind == "integer":
        return int(_number(schema, 1))
    if kind == "number":
        return _number(schema, 1.5)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(schema, name)


def _string(schema: JSON, name: str) -> str:
    if schema.get("format") in FORMATS:
        return FORMATS[schema["format"]]
    text = f"sample {name}"
    minimum = int(schema.get("minLength", 0))
    if len(text) < minimum:
        text += "x" * (minimum - len(text))
    if "maxLength" in schema:
        text = text[: int(schema["maxLength"])]
    return text


def _number(schema: JSON, preferred: float) -> float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = preferred
    if isinstance(low, int | float) and value <= low:
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    if isinstance(high, int | float) and value >= high:
        value = high - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
    return value


def resolve(ref: Any, root: JSON) -> Any:
    """A local `#/...` reference inside `root` ($defs, definitions, any JSON pointer)."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return {}
    target: Any = root
    for raw in ref.lstrip("#").strip("/").split("/"):
        if not raw:
            continue
        part = raw.replace("~1", "/").replace("~0", "~")
        target = target.get(part, {}) if isinstance(target, dict) else {}
    return target


def _is_null(schema: JSON) -> bool:
    return schema.get("type") == "null"


def _merge(into: JSON, part: JSON) -> None:
    for key, value in part.items():
        if key == "properties" and isinstance(value, dict):
            into.setdefault("properties", {}).update(value)
        elif key == "required" and isinstance(value, list):
            into["required"] = [*into.get("required", []), *value]
        else:
            into.setdefault(key, value)
