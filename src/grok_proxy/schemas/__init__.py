"""Pydantic request models, one module per area; unknown fields are allowed and forwarded."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Open(BaseModel):
    """A request object that accepts fields the proxy does not know: xAI keeps adding them."""

    model_config = ConfigDict(extra="allow")
