"""Pydantic request models, one module per area; unknown fields are allowed and forwarded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict


class Open(BaseModel):
    """A request object that accepts fields the proxy does not know: xAI keeps adding them."""

    model_config = ConfigDict(extra="allow")


class OtherKind(Open):
    """A content block, part or tool of a kind the proxy does not check: upstream judges it."""

    type: str


def kind_of(known: set[str]) -> Callable[[Any], str]:
    """A discriminator: the object's `type` when the proxy checks that kind, else `other`."""

    def kind(value: Any) -> str:
        found = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return found if found in known else "other"

    return kind
