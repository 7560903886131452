"""The settings groups, one per plane; each field is read from its own environment variable.

A field's `validation_alias` is its variable (`XAI_READ_TIMEOUT`), so errors name what the
user wrote. Its `description` is the one-line summary `.env.example` shows; the settings
tables in docs/configuration.md add its `details` (tools/settings_docs.py writes both).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    model_validator,
)

from grok_proxy.calls.presets import PRESETS

# A comment in a keys setting or file: from a `#` at the line's start or after whitespace.
COMMENT = re.compile(r"(?:^|\s)#.*$")


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
            raise ValueError(f"the entry {item!r} is not model=in/cached/out")
        prices[model.strip()] = (parts[0], parts[1], parts[2])
    return prices


def parse_keys(text: str) -> tuple[str, ...]:
    """Access keys, comma-separated or `@/path/to/file` with one key per line.

    A `#` at the start of a line or after a space starts a comment, to the line's end:
    `# old: a, b` yields no key. A setting that yields no key is refused, since it would
    silently turn access control off.
    """
    source = text.strip()
    if not source:
        return ()
    if source.startswith("@"):
        try:
            with open(source[1:], encoding="utf-8") as keys_file:
                source = keys_file.read()
        except OSError as exc:
            raise ValueError(
                f"names a keys file that cannot be read: {source[1:]} ({exc.strerror})"
            ) from None
    keys: list[str] = []
    for line in source.splitlines():
        keys.extend(split(COMMENT.sub("", line)))
    if not keys:
        where = f"the file {text.strip()[1:]}" if text.strip().startswith("@") else "it"
        raise ValueError(
            f"{where} holds no key (only comments or blanks); refusing to start with access "
            "control off. Unset GROK_PROXY_API_KEYS for pass-through."
        )
    return tuple(keys)


def _parsed_from_text(parse: Callable[[str], object]) -> BeforeValidator:
    """Lists and maps are written as the docs show them (comma-separated), not as JSON."""
    return BeforeValidator(lambda value: parse(value) if isinstance(value, str) else value)


# `XAI_API_KEY=` in a .env file means "not set", not "the empty key".
Secret = Annotated[SecretStr | None, BeforeValidator(lambda value: None if value == "" else value)]
CommaList = Annotated[list[str], _parsed_from_text(split)]


def details(text: str) -> dict[str, JsonValue]:
    """More of a setting's effect than its one-line description: the docs table shows both."""
    return {"details": text}


class Group(BaseModel):
    """A group of settings: frozen, read by variable name, never showing the values read."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        validate_by_alias=True,
        validate_by_name=True,
    )


class ServingSettings(Group):
    """Where the proxy listens for callers, and how it lets them go."""

    host: str = Field(
        default="127.0.0.1",
        validation_alias="HOST",
        description="Address `grok-proxy serve` listens on when `--host` is not given.",
        json_schema_extra=details(
            "The Docker image sets `0.0.0.0`, so a published port (`-p`) reaches it."
        ),
    )
    port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        validation_alias="PORT",
        description="Port `grok-proxy serve` listens on when `--port` is not given.",
        json_schema_extra=details(
            "`docker run -e PORT=9000 -p 9000:9000 grok-proxy`; the image's healthcheck probes "
            "the same port."
        ),
    )
    workers: int = Field(
        default=1,
        ge=1,
        validation_alias="WORKERS",
        description="Worker processes when `--workers` is not given.",
        json_schema_extra=details("One per core (docs/deployment.md)."),
    )
    grpc_port: int = Field(
        default=8001,
        ge=0,
        le=65535,
        validation_alias="GROK_PROXY_GRPC_PORT",
        description=(
            "Port of the gRPC listener for xAI's own SDK, on the HTTP host; `0` turns it off."
        ),
        json_schema_extra=details(
            "`grok-proxy serve --grpc-port N` sets it. With `--workers N` every worker listens "
            "on it (`SO_REUSEPORT`) and the kernel spreads connections; the start fails with a "
            "clear message if another process holds the port."
        ),
    )
    shutdown_grace_seconds: float = Field(
        default=30.0,
        ge=0,
        validation_alias="SHUTDOWN_GRACE_SECONDS",
        description="On SIGTERM, seconds for requests and streams in flight to finish.",
        json_schema_extra=details(
            "Meanwhile the proxy stops accepting and `/health` answers 503; then open streams "
            "end with an SSE error event. The Docker image sets `8`, under `docker stop`'s "
            "10 s (docs/deployment.md)."
        ),
    )
    forwarded_allow_ips: CommaList = Field(
        default_factory=list,
        validation_alias="FORWARDED_ALLOW_IPS",
        description=(
            "Load balancers whose `X-Forwarded-For`/`-Proto` headers are trusted, "
            "comma-separated (`*`: any); empty trusts none."
        ),
        json_schema_extra=details("The access log then shows the real client."),
    )
    cors_allow_origins: CommaList = Field(
        default_factory=list,
        validation_alias="CORS_ALLOW_ORIGINS",
        description="Origins allowed to call from a browser page, comma-separated (`*`: any).",
        json_schema_extra=details(
            "E.g. `https://app.example.com,http://localhost:3000`. Empty: no CORS headers, so "
            "browsers on other origins are refused."
        ),
    )


class UpstreamSettings(Group):
    """Where calls go and how the proxy reaches it, for HTTP, WebSocket and gRPC alike."""

    preset: Literal["xai", "openrouter", "cometapi", "cloudflare"] = Field(
        default="xai",
        validation_alias="XAI_UPSTREAM",
        description=(
            "Which access point serves Grok: `xai`, `openrouter`, `cometapi` or `cloudflare`."
        ),
        json_schema_extra=details(
            "Callers' requests and answers stay the same whichever is chosen (the blocks in "
            '"Access points" below).'
        ),
    )
    base_url: Annotated[str, AfterValidator(lambda url: url.rstrip("/"))] = Field(
        # Route paths start with "/", so a trailing slash would double it.
        default="",
        validation_alias="XAI_BASE_URL",
        description=(
            "Base URL of the upstream; each route's path is appended (`/chat/completions`, ...). "
            "Empty: the preset's (`https://api.x.ai/v1` for xai)."
        ),
        json_schema_extra=details("E.g. the simulator, `http://127.0.0.1:9100/v1`."),
    )
    region: str = Field(
        default="",
        validation_alias="XAI_REGION",
        description=(
            "With `xai`: a regional host, e.g. `us-east-1` for `https://us-east-1.api.x.ai/v1`; "
            "empty routes automatically."
        ),
        json_schema_extra=details("Requests fail there if the region cannot serve them."),
    )
    model_aliases: Annotated[dict[str, str], _parsed_from_text(parse_aliases)] = Field(
        default_factory=dict,
        validation_alias="XAI_MODEL_ALIASES",
        description=(
            "Extra model names, comma-separated `caller=upstream` pairs: "
            "`grok=x-ai/grok-4.3,fast=x-ai/grok-4.20-non-reasoning`."
        ),
        json_schema_extra=details("Answers come back with the caller's name."),
    )
    cloudflare_account_id: str = Field(
        default="",
        validation_alias="CLOUDFLARE_ACCOUNT_ID",
        description="With `cloudflare`: your account id (required unless `XAI_BASE_URL` is set).",
    )
    cloudflare_gateway_id: str = Field(
        default="",
        validation_alias="CLOUDFLARE_GATEWAY_ID",
        description="With `cloudflare`: your gateway id (required unless `XAI_BASE_URL` is set).",
    )
    cloudflare_aig_token: Secret = Field(
        default=None,
        validation_alias="CLOUDFLARE_AIG_TOKEN",
        description=(
            "With an authenticated Cloudflare gateway: its token, sent as "
            "`cf-aig-authorization: Bearer …`."
        ),
    )
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        validation_alias="XAI_CONNECT_TIMEOUT",
        description=(
            "Seconds to open a connection to the upstream (and to get a pooled one); then 504."
        ),
        json_schema_extra=details("The 504 comes after retries."),
    )
    read_timeout: float = Field(
        default=900.0,
        gt=0,
        validation_alias="XAI_READ_TIMEOUT",
        description="Longest wait in seconds for the next byte from upstream, first or later.",
        json_schema_extra=details(
            "Then 504, or an error event mid-stream; a gRPC call ends with `DEADLINE_EXCEEDED`. "
            "No total deadline on a stream."
        ),
    )
    write_timeout: float = Field(
        default=60.0,
        gt=0,
        validation_alias="XAI_WRITE_TIMEOUT",
        description=(
            "Longest wait in seconds for the upstream to take more of a request body; then 504."
        ),
        json_schema_extra=details("It ends an upload to a stuck upstream."),
    )
    total_timeout: float = Field(
        default=3600.0,
        ge=0,
        validation_alias="XAI_TOTAL_TIMEOUT",
        description="Longest time in seconds for a complete non-streamed answer; `0`: none.",
        json_schema_extra=details(
            "Then 504. Streams (SSE) and streamed bodies have no total deadline, only the read "
            "timeout."
        ),
    )
    pool_size: int = Field(
        default=1000,
        ge=1,
        validation_alias="XAI_POOL_SIZE",
        description=(
            "Most upstream requests in flight at once, per worker, and so most upstream "
            "connections."
        ),
        json_schema_extra=details(
            "Idle connections are kept 30 s. One more request waits up to "
            "`XAI_CONNECT_TIMEOUT` for a slot, then 504 naming this setting."
        ),
    )
    proxy_url: str = Field(
        default="",
        validation_alias="XAI_PROXY_URL",
        description=(
            "Forward proxy for upstream traffic, e.g. `http://user:pass@proxy.corp:3128`. "
            "Empty: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, as curl reads "
            "them; `direct`: no proxy at all."
        ),
        json_schema_extra=details(
            "https upstreams are tunnelled with CONNECT; `NO_PROXY` still applies. SOCKS "
            "proxies are refused at start-up."
        ),
    )
    ca_bundle: str = Field(
        default="",
        validation_alias="XAI_CA_BUNDLE",
        description=(
            "PEM file of CA certificates to trust upstream in addition to the built-in roots."
        ),
        json_schema_extra=details("A company CA, or a TLS-inspecting proxy's."),
    )
    ssl_cert_file: str = Field(
        default="",
        validation_alias="SSL_CERT_FILE",
        description=(
            "The standard variable, honoured from `.env` too: a PEM bundle of extra CA "
            "certificates."
        ),
    )
    ssl_cert_dir: str = Field(
        default="",
        validation_alias="SSL_CERT_DIR",
        description=(
            "The standard variable, honoured from `.env` too: `:`-separated directories of "
            "extra CA certificate files."
        ),
    )
    grpc_url: str = Field(
        default="",
        validation_alias="XAI_GRPC_URL",
        description=(
            "Where gRPC calls go: `grpcs://host:port` (TLS) or `grpc://host:port` (plaintext). "
            "Empty: `grpcs://api.x.ai:443`, or the `XAI_REGION` host."
        ),
        json_schema_extra=details(
            "E.g. the simulator's `grpc://127.0.0.1:9101`. With `XAI_UPSTREAM` other than "
            "`xai` and no `XAI_GRPC_URL`, the gRPC listener stays off (those access points "
            "speak no gRPC, and their keys must not go to xAI)."
        ),
    )

    @model_validator(mode="after")
    def _cloudflare_needs_its_ids(self) -> UpstreamSettings:
        named = self.cloudflare_account_id and self.cloudflare_gateway_id
        if self.preset == "cloudflare" and not self.base_url and not named:
            raise ValueError(
                "XAI_UPSTREAM=cloudflare needs CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_GATEWAY_ID"
            )
        return self

    @property
    def effective_base_url(self) -> str:
        """Where requests go: XAI_BASE_URL if set, else the preset's URL (region applied)."""
        if self.base_url:
            return self.base_url
        if self.preset == "xai" and self.region:
            return f"https://{self.region}.api.x.ai/v1"
        return PRESETS[self.preset].base_url.format(
            account_id=self.cloudflare_account_id, gateway_id=self.cloudflare_gateway_id
        )


class RetrySettings(Group):
    """Sending a request again when it failed before any byte reached the caller."""

    max_retries: int = Field(
        default=2,
        ge=0,
        validation_alias="XAI_MAX_RETRIES",
        description=(
            "Retries after a connect failure or a 429/502/503/504, only before any byte reached "
            "the caller; `0` turns retrying off."
        ),
        json_schema_extra=details(
            "A status answer is retried only where resending cannot do the work twice "
            "(idempotent method, `Idempotency-Key`, 429 with `Retry-After`, 503), and not when "
            "the caller's SDK retries itself (`x-stainless-retry-count`); "
            "`x-grok-proxy-max-retries: N` caps retries per request. Never other statuses, "
            "read timeouts, or started streams."
        ),
    )
    backoff: float = Field(
        default=0.5,
        ge=0,
        validation_alias="XAI_RETRY_BACKOFF",
        description=(
            "The first retry waits about this many seconds (with jitter); each next one doubles."
        ),
    )
    max_wait: float = Field(
        default=10.0,
        ge=0,
        validation_alias="XAI_RETRY_MAX_WAIT",
        description="Longest single wait between attempts, in seconds; it caps `Retry-After`.",
    )
    deadline: float = Field(
        default=30.0,
        ge=0,
        validation_alias="XAI_RETRY_DEADLINE",
        description="No retry starts later than this many seconds after the first attempt.",
    )


class CallSettings(Group):
    """What the proxy adds to a call on its way through: stream upkeep and default models."""

    sse_keepalive_seconds: float = Field(
        default=15.0,
        ge=0,
        validation_alias="SSE_KEEPALIVE_SECONDS",
        description=(
            "After this many seconds of upstream silence inside a stream, send the SSE comment "
            "`: keep-alive`; `0`: never."
        ),
        json_schema_extra=details(
            "It keeps load balancers with idle cut-offs from closing the connection."
        ),
    )
    capture_stream_usage: bool = Field(
        default=False,
        validation_alias="CAPTURE_STREAM_USAGE",
        description=(
            "Ask xAI for the usage chunk of chat streams whose caller did not, and remove it "
            "from what the caller receives."
        ),
        json_schema_extra=details(
            "For complete token metrics when callers leave out `stream_options.include_usage`. "
            "Off by default because it changes the request xAI receives; while off, such "
            "streams count as `grok_proxy_streams_without_usage_total`, not as zero tokens."
        ),
    )
    default_image_model: str = Field(
        default="grok-imagine-image",
        validation_alias="DEFAULT_IMAGE_MODEL",
        description="Model for `/images/generate` when the request names none.",
        json_schema_extra=details("`/images/generations` forwards the request as sent."),
    )
    default_vision_model: str = Field(
        default="grok-4.3",
        validation_alias="DEFAULT_VISION_MODEL",
        description="Model for `/vision/analyze` when the request names none.",
    )


class LimitSettings(Group):
    """How much and how slowly a caller may send, and how large an answer may be read."""

    max_connections: int = Field(
        default=4096,
        ge=1,
        validation_alias="MAX_CONNECTIONS",
        description=(
            "Most caller connections open at once, per worker; further ones get 503 and are closed."
        ),
        json_schema_extra=details(
            "Each refusal writes a log line. Lowered at start to half the open-files limit "
            "(less 64), which the proxy raises to the hard limit first."
        ),
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        validation_alias="MAX_HEADER_BYTES",
        description=(
            "Largest request head (request line and headers, as sent), in bytes; larger gets "
            "431, or 414 when the URL alone crosses it."
        ),
        json_schema_extra=details(
            "The answer comes as soon as the limit is crossed: nothing more is read or buffered."
        ),
    )
    headers_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias="HEADERS_TIMEOUT",
        description=(
            "Seconds a caller has to send a request's line and headers; then 408 and the "
            "connection is closed."
        ),
        json_schema_extra=details(
            "Counted from the connection's start or the request's first byte; a connection "
            "that sent nothing is closed silently."
        ),
    )
    body_timeout: float = Field(
        default=30.0,
        gt=0,
        validation_alias="BODY_TIMEOUT",
        description=(
            "Longest silence in seconds while a request body arrives; then 408 and the "
            "connection is closed."
        ),
        json_schema_extra=details("Also the grace period before `BODY_MIN_RATE` applies."),
    )
    body_min_rate: int = Field(
        default=1024,
        ge=0,
        validation_alias="BODY_MIN_RATE",
        description=(
            "Slowest average upload in bytes per second once `BODY_TIMEOUT` has passed; `0`: "
            "no minimum."
        ),
        json_schema_extra=details(
            "At 1 KiB/s a 64 MiB body may take 18 hours; a 50 MB upload over a 1 Mbit/s link "
            "needs about 15 times more."
        ),
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1,
        validation_alias="MAX_BODY_BYTES",
        description=(
            "Largest request body in bytes (64 MiB: two 20 MiB images as base64 fit); larger "
            "gets 413."
        ),
        json_schema_extra=details(
            "Refused from `Content-Length`, or as soon as the count passes it. Validated JSON "
            "routes hold the body in memory; the pass-through (files, batches, anything else) "
            "streams it upstream as it arrives."
        ),
    )
    max_response_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1,
        validation_alias="MAX_RESPONSE_BYTES",
        description=(
            "Largest JSON answer the proxy reads whole (to count usage or rewrite it); above, "
            "502 naming this setting."
        ),
        json_schema_extra=details(
            "Other answers (file downloads, anything the pass-through relays) stream through "
            "with no limit and flat memory."
        ),
    )
    max_sse_event_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        validation_alias="MAX_SSE_EVENT_BYTES",
        description=(
            "Largest single event of an upstream stream; a larger one ends the stream with an "
            "error event instead of growing memory."
        ),
    )
    ws_max_message_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        validation_alias="WS_MAX_MESSAGE_BYTES",
        description=(
            "Largest WebSocket message relayed, either way, in bytes; a larger one closes the "
            "session with 1009."
        ),
        json_schema_extra=details("16 MiB is well above xAI's audio chunks."),
    )


class AccessSettings(Group):
    """Who may call a shared proxy, and the key it sends upstream for them."""

    api_keys: Annotated[tuple[str, ...], _parsed_from_text(parse_keys)] = Field(
        default=(),
        repr=False,
        validation_alias="GROK_PROXY_API_KEYS",
        description=(
            "Keys callers must present, comma-separated, or `@/path/to/file` with one key per "
            "line. Empty: pure pass-through, each caller's own key goes upstream."
        ),
        json_schema_extra=details(
            "When set, a caller without one of these keys gets 401 (nothing is sent upstream) "
            "and `XAI_API_KEY` goes upstream instead of the caller's. A `#` at a line's start "
            "or after a space starts a comment to the line's end, never a key; a setting that "
            "yields no key refuses to start."
        ),
    )
    server_key: Secret = Field(
        default=None,
        validation_alias="XAI_API_KEY",
        description=(
            "The server's own xAI key, sent upstream on a shared proxy; required with "
            "`GROK_PROXY_API_KEYS`."
        ),
        json_schema_extra=details("It never leaves the server except towards xAI."),
    )
    ops_token: Secret = Field(
        default=None,
        validation_alias="GROK_PROXY_OPS_TOKEN",
        description=(
            "Token for `/metrics`, `/docs`, `/redoc`, `/openapi.json` and `/health?upstream=1`: "
            "a Bearer token, or the password of Basic auth."
        ),
        json_schema_extra=details(
            "Prometheus sends it as `authorization`; a browser prompts for it on `/docs`. "
            "Unset: on a shared proxy (access keys, or members in a team database) an access "
            "key of `GROK_PROXY_API_KEYS` or the admin token opens them, and with neither set "
            "they are closed; in pass-through mode they are open. Plain `/health` is always "
            "open."
        ),
    )

    @model_validator(mode="after")
    def _keys_need_the_server_key(self) -> AccessSettings:
        if self.api_keys and self.server_key is None:
            raise ValueError("GROK_PROXY_API_KEYS is set, so XAI_API_KEY must be set too")
        return self


class TeamSettings(Group):
    """Members, usage and limits when one xAI account is shared (docs/teams.md)."""

    data_dir: str = Field(
        default="./.grok-proxy",
        validation_alias="GROK_PROXY_DATA_DIR",
        description=(
            "Directory of the SQLite team database (`teams.db`) when `DATABASE_URL` is not set."
        ),
        json_schema_extra=details("Created only once the proxy is shared."),
    )
    database_url: Secret = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description=(
            "A PostgreSQL team database shared by replicas, e.g. "
            "`postgresql://grok:pw@db/grok`; empty: SQLite in `GROK_PROXY_DATA_DIR`."
        ),
        json_schema_extra=details(
            "asyncpg; `?host=/run/postgresql` for a unix socket. Migrations run at start-up."
        ),
    )
    admin_token: Secret = Field(
        default=None,
        validation_alias="GROK_PROXY_ADMIN_TOKEN",
        description=(
            "Bearer token of the `/admin` routes (members, keys, limits, usage); unset: they "
            "answer 403."
        ),
    )
    model_prices: Annotated[
        dict[str, tuple[float, float, float]], _parsed_from_text(parse_prices)
    ] = Field(
        default_factory=dict,
        validation_alias="MODEL_PRICES",
        description=(
            "Price overrides, comma-separated `model=input/cached/output` in dollars per "
            "million tokens: `grok-4=3/0.75/15`."
        ),
        json_schema_extra=details(
            "`model=input/output` charges cached input as input. Other models use the prices "
            "xAI's `/language-models` publishes (read at start-up and hourly)."
        ),
    )
    client_secrets: Literal["any", "minted"] = Field(
        default="any",
        validation_alias="TEAM_CLIENT_SECRETS",
        description=(
            "Ephemeral WebSocket tokens a shared proxy relays: `any`, or `minted` (only those "
            "minted through this proxy)."
        ),
        json_schema_extra=details(
            "With `any`, tokens (`xai-client-secret.<token>`) minted through the proxy are the "
            "minting member's sessions, and others go to xAI to check, on the session routes "
            "only; with `minted`, others get 401."
        ),
    )
    refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        validation_alias="TEAM_REFRESH_SECONDS",
        description="How often each worker reloads members and keys from the team database.",
        json_schema_extra=details(
            "A member disabled or a key rotated from the CLI or another replica stops working "
            "within this time (at once on the replica whose `/admin` made the change)."
        ),
    )


class LogSettings(Group):
    """What the proxy writes to its log."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"],
        BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value),
    ] = Field(
        default="info",
        validation_alias="LOG_LEVEL",
        description=(
            "Least severe level written: `debug`, `info`, `warning` or `error`; access lines "
            "are `info`."
        ),
    )
    format: Literal["text", "json"] = Field(
        default="text",
        validation_alias="LOG_FORMAT",
        description=(
            "`json`: one JSON object per line (the Docker image's default); `text`: for people."
        ),
    )
