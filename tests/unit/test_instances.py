"""The simulator's schema instances validate against the schemas clients send."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, Field

from grok_proxy.simulator.core import frame, writes
from grok_proxy.simulator.instances import instance


class Leaf(BaseModel):
    label: str = Field(min_length=12, max_length=20)
    weight: float = Field(gt=10, le=11)


class Tree(BaseModel):
    root: Leaf
    children: list[Tree] = Field(max_length=3)
    parent: Tree | None
    kind: str = Field(pattern="^[a-z ]+$", default="sample kind")


SCHEMAS: list[dict[str, Any]] = [
    Tree.model_json_schema(),
    {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "mail": {"type": "string", "format": "email"},
            "level": {"enum": ["low", "high"]},
            "fixed": {"const": 7},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 5}]},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}]},
            "both": {
                "allOf": [
                    {"$ref": "#/definitions/A"},
                    {"type": "object", "properties": {"b": {"type": "integer"}}},
                ]
            },
            "several": {"type": ["null", "array"], "items": {"type": "number"}, "minItems": 3},
        },
        "required": ["when", "mail", "level", "fixed", "maybe", "pair", "both", "several"],
        "additionalProperties": False,
        "definitions": {"A": {"type": "object", "properties": {"a": {"type": "string"}}}},
    },
    {"type": "array", "items": {"type": "integer", "exclusiveMinimum": 1, "maximum": 2}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_instance_validates(schema: dict[str, Any]) -> None:
    value = instance(schema)
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())
    assert instance(schema) == value  # deterministic


def test_recursive_schema_ends() -> None:
    assert isinstance(instance(Tree.model_json_schema()), dict)


def test_framings_keep_the_bytes_a_client_joins() -> None:
    event = b'data: {"a": 1, "b": [2, 3]}\n\n'
    crlf = frame(event, {"crlf"})
    assert crlf == b'data: {"a": 1, "b": [2, 3]}\r\n\r\n'
    pieces = list(writes(crlf, {"split", "crlf"}))
    assert b"".join(pieces) == crlf and len(pieces) >= 3
    assert any(piece.endswith(b"\r") for piece in pieces)  # a CR waits for its LF
    multiline = frame(event, {"multiline"})
    joined = b"\n".join(line[6:] for line in multiline.split(b"\n") if line.startswith(b"data: "))
    assert joined.replace(b"\n", b"").replace(b" ", b"") == b'{"a":1,"b":[2,3]}'
