"""Request models, one module per area.

Routes that mirror an xAI route forward the caller's bytes and check only what the proxy
itself reads (`Mirrored`); everything else is xAI's to judge, so the proxy never refuses a
request that xAI's published schema accepts (docs/api.md lists the checks per route). The
seed's own convenience routes (`/images/generate`, `/vision/analyze`) have full models.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import DEFAULT_REF_TEMPLATE

from grok_proxy.schemas.published import request_schema


class Open(BaseModel):
    """A request object that accepts fields the proxy does not know: xAI keeps adding them."""

    model_config = ConfigDict(extra="allow")


class Mirrored(BaseModel):
    """The body of a route that mirrors xAI's: only the fields the proxy reads are declared.

    Each declared field has the type xAI's schema gives it (so a body xAI accepts passes);
    other fields are not even materialized. `/docs` shows xAI's own schema (`published`).
    """

    model_config = ConfigDict(extra="ignore")

    published: ClassVar[str]
    examples: ClassVar[list[dict[str, Any]]]

    # Recorded (access line, metrics, team model limits); presets rewrite it.
    model: str | None = None

    @classmethod
    def model_json_schema(  # type: ignore[override]
        cls, by_alias: bool = True, ref_template: str = DEFAULT_REF_TEMPLATE, *_: Any, **__: Any
    ) -> dict[str, Any]:
        """xAI's published schema of this body, with the proxy's examples."""
        schema = request_schema(cls.published, ref_template)
        schema["examples"] = cls.examples
        return schema


class StreamOptions(BaseModel):
    """`stream_options`: the proxy reads `include_usage` to know whether usage will come."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = None


class Streamable(Mirrored):
    """A mirrored body that may ask for a stream (relayed event by event)."""

    stream: bool | None = None


class WithStreamOptions(Streamable):
    """A chat or text completion: `stream_options.include_usage` says if usage will come."""

    stream_options: StreamOptions | None = None
