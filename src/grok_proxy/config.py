"""Every setting of grok-proxy, read once from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Typed settings; the environment variable of each field is its name in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    xai_base_url: str = Field(
        default="https://api.x.ai/v1",
        description="Base URL of the upstream API; each route's path is appended to it.",
    )
    xai_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection to the upstream."
    )
    xai_read_timeout: float = Field(
        default=900.0,
        gt=0,
        description="Longest wait in seconds for the next byte from upstream, first or later.",
    )
    xai_pool_size: int = Field(
        default=1000, ge=1, description="Most upstream connections open at once, per worker."
    )
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024, ge=1, description="Largest request body accepted, in bytes."
    )
    default_image_model: str = Field(
        default="grok-2-image", description="Model used by image routes when none is given."
    )
    default_vision_model: str = Field(
        default="grok-2-vision-latest", description="Model used by /vision/analyze by default."
    )
    forwarded_allow_ips: str = Field(
        default="",
        description=(
            "Comma-separated addresses of load balancers whose X-Forwarded-For/-Proto headers "
            "are trusted (`*` for any); empty trusts none."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log level written."
    )

    @field_validator("xai_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        # Route paths start with "/", so a trailing slash would double it.
        return value.rstrip("/")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings()
