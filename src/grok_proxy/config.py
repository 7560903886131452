"""Every setting of grok-proxy, read once from the environment and `.env`."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from grok_proxy.calls.presets import PRESETS

# A comment in a keys setting or file: from a `#` at the line's start or after whitespace.
COMMENT = re.compile(r"(?:^|\s)#.*$")


class Settings(BaseSettings):
    """Typed settings; the environment variable of each field is its name in upper case."""

    # hide_input_in_errors: a configuration error must not print the values (keys) it read.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    xai_upstream: Literal["xai", "openrouter", "cometapi", "cloudflare"] = Field(
        default="xai", description="Which access point serves Grok (docs/configuration.md)."
    )
    xai_base_url: str = Field(
        default="",
        description=(
            "Base URL of the upstream; each route's path is appended to it. Empty: the "
            "preset's (`https://api.x.ai/v1` for xai)."
        ),
    )
    xai_region: str = Field(
        default="", description="xAI region for the xai preset, e.g. `us-east-1`; empty: auto."
    )
    xai_model_aliases: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Extra model names, `caller=upstream` pairs: `grok=x-ai/grok-4.3`.",
    )
    cloudflare_account_id: str = Field(default="", description="For the cloudflare preset.")
    cloudflare_gateway_id: str = Field(default="", description="For the cloudflare preset.")
    cloudflare_aig_token: SecretStr | None = Field(
        default=None,
        description="Token of an authenticated Cloudflare AI Gateway (`cf-aig-authorization`).",
    )
    xai_connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection to the upstream."
    )
    xai_read_timeout: float = Field(
        default=900.0,
        gt=0,
        description="Longest wait in seconds for the next byte from upstream, first or later.",
    )
    xai_write_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Longest wait in seconds for the upstream to take more of a request body.",
    )
    xai_total_timeout: float = Field(
        default=3600.0,
        ge=0,
        description=(
            "Longest time in seconds for a complete non-streamed answer; 0: none. Streams "
            "have no total deadline."
        ),
    )
    xai_proxy_url: str = Field(
        default="",
        description=(
            "Forward proxy for upstream traffic, e.g. `http://proxy.corp:3128`. Empty: "
            "HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY from the environment; "
            "`direct`: no proxy at all."
        ),
    )
    xai_ca_bundle: str = Field(
        default="",
        description="PEM file of extra CA certificates to trust upstream (TLS-inspecting proxies).",
    )
    ssl_cert_file: str = Field(
        default="", description="PEM file of extra CA certificates (as OpenSSL reads it)."
    )
    ssl_cert_dir: str = Field(
        default="", description="Directories of extra CA certificate files, `:`-separated."
    )
    xai_pool_size: int = Field(
        default=1000, ge=1, description="Most upstream connections open at once, per worker."
    )
    xai_max_retries: int = Field(
        default=2,
        ge=0,
        description=(
            "Retries after a connect error or a 429/502/503/504, only before any byte reached "
            "the caller; 0 turns retrying off."
        ),
    )
    xai_retry_backoff: float = Field(
        default=0.5,
        ge=0,
        description="First retry waits about this many seconds; each next one doubles.",
    )
    xai_retry_max_wait: float = Field(
        default=10.0,
        ge=0,
        description="Longest single wait between attempts, Retry-After included.",
    )
    xai_retry_deadline: float = Field(
        default=30.0,
        ge=0,
        description="No retry starts later than this many seconds after the first attempt.",
    )
    sse_keepalive_seconds: float = Field(
        default=15.0,
        ge=0,
        description="Send `: keep-alive` after this much upstream silence in a stream; 0: never.",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, seconds for requests and streams in flight to finish.",
    )
    xai_api_key: SecretStr | None = Field(
        default=None,
        description="The server's own xAI key, sent upstream when GROK_PROXY_API_KEYS is set.",
    )
    grok_proxy_api_keys: str = Field(
        default="",
        description=(
            "Comma-separated keys callers must present (then XAI_API_KEY goes upstream instead "
            "of theirs), or `@/path/to/file` with one key per line. Empty: pure pass-through."
        ),
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed to call from a browser (`*`: any).",
    )
    capture_stream_usage: bool = Field(
        default=False,
        description=(
            "Ask xAI for the usage chunk of chat streams whose caller did not, for complete "
            "token metrics, and remove it from what the caller receives. Off by default: it "
            "changes the request xAI receives."
        ),
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        description=(
            "Largest request body accepted, in bytes (two 20 MiB images as base64 fit; "
            "uploads stream, so it costs no memory there)."
        ),
    )
    max_response_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1,
        description=(
            "Largest JSON answer the proxy reads whole (usage, rewrites); 502 above. Other "
            "answers stream through and have no limit."
        ),
    )
    max_sse_event_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest single event of an upstream stream; larger ends it with an error.",
    )
    max_header_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest total size of request headers (431 above)."
    )
    default_image_model: str = Field(
        default="grok-imagine-image", description="Model used by image routes when none is given."
    )
    default_vision_model: str = Field(
        default="grok-4.3", description="Model used by /vision/analyze by default."
    )
    forwarded_allow_ips: str = Field(
        default="",
        description=(
            "Comma-separated addresses of load balancers whose X-Forwarded-For/-Proto headers "
            "are trusted (`*` for any); empty trusts none."
        ),
    )
    ws_max_message_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description=(
            "Largest WebSocket message relayed, either way, in bytes; a larger one closes the "
            "session with 1009."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe log level written; access lines are `info`."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="`json` for one JSON object per line, `text` for people."
    )
    headers_timeout: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Seconds a caller has to send a request's line and headers, from the connection's "
            "start or the request's first byte; then 408 and the connection is closed."
        ),
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Longest silence in seconds while a request body arrives, and the grace before "
            "BODY_MIN_RATE applies; then 408 and the connection is closed."
        ),
    )
    body_min_rate: int = Field(
        default=1024,
        ge=0,
        description=(
            "Slowest average upload in bytes per second once BODY_TIMEOUT has passed "
            "(1 KiB/s: 25 MiB take 7 hours); 0: no minimum."
        ),
    )
    grok_proxy_ops_token: SecretStr | None = Field(
        default=None,
        description=(
            "Token for /metrics, /docs, /openapi.json and /health?upstream=1 (Bearer, or "
            "the password of Basic auth). Unset: on a shared proxy an access key of "
            "GROK_PROXY_API_KEYS or the admin token opens them (with neither, they are "
            "closed); in pass-through mode they are open."
        ),
    )
    max_connections: int = Field(
        default=4096,
        ge=1,
        description=(
            "Most caller connections open at once per worker (lowered to fit the open-files "
            "limit); further ones get 503 and are closed."
        ),
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address `grok-proxy serve` listens on when `--host` is not given.",
    )
    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="Port `grok-proxy serve` listens on when `--port` is not given.",
    )
    workers: int = Field(
        default=1, ge=1, description="Worker processes when `--workers` is not given."
    )
    grok_proxy_grpc_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        description="Port of the gRPC listener (xAI's own SDK), on the HTTP host; 0 turns it off.",
    )
    xai_grpc_url: str = Field(
        default="",
        description=(
            "Where gRPC calls go: `grpcs://host:port` (TLS) or `grpc://host:port` (plaintext). "
            "Empty: `grpcs://api.x.ai:443`, or the XAI_REGION host."
        ),
    )
    # Teams (issue 17): members, usage and limits when one xAI account is shared.
    grok_proxy_data_dir: str = Field(
        default="./.grok-proxy",
        description=(
            "Directory of the team database (SQLite) when DATABASE_URL is not set; only "
            "created once the proxy is shared (docs/teams.md)."
        ),
    )
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "Team database shared by replicas, e.g. `postgresql://user:pw@host/db`; empty: "
            "SQLite in GROK_PROXY_DATA_DIR."
        ),
    )
    grok_proxy_admin_token: SecretStr | None = Field(
        default=None,
        description="Bearer token for the /admin routes (members, usage); unset: they answer 403.",
    )
    model_prices: Annotated[dict[str, tuple[float, float, float]], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Price overrides, `model=input/cached/output` in dollars per million tokens, "
            "comma-separated; other models use the prices xAI's /language-models publishes."
        ),
    )
    team_refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often each worker reloads members and keys from the team database.",
    )
    team_client_secrets: Literal["any", "minted"] = Field(
        default="any",
        description=(
            "Ephemeral WebSocket tokens a shared proxy relays: `any` (those minted through it "
            "are the minting member's sessions; others go to xAI to check, on the session "
            "routes only) or `minted` (only those minted through this proxy; others get 401)."
        ),
    )

    @field_validator("database_url", "grok_proxy_admin_token", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        # `DATABASE_URL=` in a .env file means "not set" (as for XAI_API_KEY).
        return None if value == "" else value

    @field_validator("xai_base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        # Route paths start with "/", so a trailing slash would double it.
        return value.rstrip("/")

    def upstream_base_url(self) -> str:
        """Where requests go: XAI_BASE_URL if set, else the preset's URL (region applied)."""
        if self.xai_base_url:
            return self.xai_base_url
        preset = PRESETS[self.xai_upstream]
        if self.xai_upstream == "xai" and self.xai_region:
            return f"https://{self.xai_region}.api.x.ai/v1"
        return preset.base_url.format(
            account_id=self.cloudflare_account_id, gateway_id=self.cloudflare_gateway_id
        )

    @field_validator("xai_api_key", "cloudflare_aig_token", "grok_proxy_ops_token", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        # `XAI_API_KEY=` in a .env file means "not set", not "the empty key".
        return None if value == "" else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.grok_proxy_api_keys and self.xai_api_key is None:
            raise ValueError("GROK_PROXY_API_KEYS is set, so XAI_API_KEY must be set too")
        if self.grok_proxy_api_keys.strip():
            self._require_access_keys()
        cloudflare_ids = self.cloudflare_account_id and self.cloudflare_gateway_id
        if self.xai_upstream == "cloudflare" and not self.xai_base_url and not cloudflare_ids:
            raise ValueError(
                "XAI_UPSTREAM=cloudflare needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_GATEWAY_ID"
            )
        return self

    def access_keys(self) -> tuple[str, ...]:
        """The keys callers must present; empty for pure pass-through of their own keys.

        A `#` at the start of a line or after a space starts a comment, to the line's end:
        `# old: a, b` yields no key.
        """
        source = self.grok_proxy_api_keys.strip()
        if source.startswith("@"):
            with open(source[1:], encoding="utf-8") as keys_file:
                source = keys_file.read()
        keys: list[str] = []
        for line in source.splitlines():
            text = COMMENT.sub("", line)
            keys.extend(key.strip() for key in text.split(",") if key.strip())
        return tuple(keys)

    def _require_access_keys(self) -> None:
        """A keys setting that yields no key would silently turn access control off."""
        source = self.grok_proxy_api_keys.strip()
        try:
            keys = self.access_keys()
        except OSError as exc:
            raise ValueError(
                f"GROK_PROXY_API_KEYS names a keys file that cannot be read: {source[1:]} "
                f"({exc.strerror})"
            ) from None
        if not keys:
            where = f"the file {source[1:]}" if source.startswith("@") else "GROK_PROXY_API_KEYS"
            raise ValueError(
                f"{where} holds no key (only comments or blanks); refusing to start with "
                "access control off. Unset GROK_PROXY_API_KEYS for pass-through."
            )

    # Lists and maps are written as the docs show them (comma-separated), not as JSON.
    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return split(value) if isinstance(value, str) else value

    @field_validator("xai_model_aliases", mode="before")
    @classmethod
    def _aliases(cls, value: object) -> object:
        return parse_aliases(value) if isinstance(value, str) else value

    @field_validator("model_prices", mode="before")
    @classmethod
    def _prices(cls, value: object) -> object:
        return parse_prices(value) if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_case_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def split(value: str) -> list[str]:
    """A comma-separated setting as a list."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_aliases(text: str) -> dict[str, str]:
    """`grok-4=x-ai/grok-4-0709, fast=x-ai/grok-4-fast` -> {"grok-4": "x-ai/grok-4-0709", ...}."""
    aliases = {}
    for item in split(text):
        caller, sep, upstream = item.partition("=")
        if sep and caller.strip() and upstream.strip():
            aliases[caller.strip()] = upstream.strip()
    return aliases


def parse_prices(text: str) -> dict[str, tuple[float, float, float]]:
    """`model=input/cached/output` (or `model=input/output`) in dollars per million tokens."""
    prices: dict[str, tuple[float, float, float]] = {}
    for item in split(text):
        model, _, numbers = item.partition("=")
        try:
            parts = [float(part) for part in numbers.split("/")]
        except ValueError:
            parts = []
        if len(parts) == 2:
            parts = [parts[0], parts[0], parts[1]]
        if len(parts) != 3 or not model.strip():
            raise ValueError(f"MODEL_PRICES entry {item!r} is not model=in/cached/out")
        prices[model.strip()] = (parts[0], parts[1], parts[2])
    return prices


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings()
