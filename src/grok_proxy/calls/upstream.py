"""The upstream target: where calls go and how they get there, decided once from the settings.

HTTP (aiohttp, `client.py`), WebSocket (websockets, `ws_relay.py`) and gRPC (grpcio,
`grpc_relay.py`) all read this one value, so the three protocols cannot drift apart on
what they used to decide each for itself:

- the base URL, and for gRPC its own target (XAI_GRPC_URL, else xAI's gRPC host);
- the headers that go with every HTTP request and WebSocket handshake: the preset's, and
  `authorization` with the upstream key (gRPC goes to a host of its own, which gets the
  key alone: a gateway's token is for the gateway);
- the trusted roots (`tls.trusted_roots`: certifi's plus XAI_CA_BUNDLE, SSL_CERT_FILE and
  SSL_CERT_DIR), as one SSL context for HTTP and WebSocket and one PEM bundle for gRPC;
- the forward proxy by curl's rules: XAI_PROXY_URL, else HTTPS_PROXY / HTTP_PROXY /
  ALL_PROXY from the environment (either case); NO_PROXY wins over both; `direct` means
  none. Only http:// and https:// proxies are supported (a SOCKS proxy stops the start).
"""

from __future__ import annotations

import base64
import ssl
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from grok_proxy.calls.presets import PRESETS, Preset
from grok_proxy.calls.tls import trusted_roots
from grok_proxy.config import Settings

# Where xai-sdk's gRPC calls go when XAI_GRPC_URL is not set.
DEFAULT_GRPC_URL = "grpcs://api.x.ai:443"


@dataclass(frozen=True, slots=True)
class ForwardProxy:
    """The forward proxy a connection goes through."""

    # Without credentials: the form a library may log.
    url: str
    # Proxy-Authorization from credentials in the proxy URL, for aiohttp.
    headers: Mapping[str, str] = field(repr=False)
    # With credentials, for libraries that build Proxy-Authorization themselves.
    address: str = field(repr=False)

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0]


@dataclass(frozen=True, slots=True)
class ProxyRule:
    """curl's rule for choosing a forward proxy, over a snapshot of the environment."""

    # XAI_PROXY_URL: empty (the environment decides), `direct`, or a proxy URL.
    setting: str
    # urllib's reading of the *_PROXY variables, both cases: {"https": ..., "no": ...}.
    environment: Mapping[str, str]

    @classmethod
    def of(cls, settings: Settings) -> ProxyRule:
        return cls(settings.upstream.proxy_url, dict(urllib.request.getproxies_environment()))

    def proxy_for(self, url: str) -> ForwardProxy | None:
        """The proxy for an http(s):// `url` (ws and grpc targets as their http form)."""
        if self.setting == "direct":
            return None
        parts = urlsplit(url)
        # urllib's own NO_PROXY matcher (suffixes, `*`, host:port); typeshed lacks it.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if bypass(parts.hostname or "", self.environment):
            return None
        chosen = self.setting or self.environment.get(parts.scheme) or self.environment.get("all")
        return parse_proxy(chosen) if chosen else None


def parse_proxy(chosen: str) -> ForwardProxy:
    """A proxy URL (or curl's bare host:port) as a ForwardProxy; ValueError if unsupported."""
    if "://" not in chosen:
        chosen = f"http://{chosen}"  # curl's default scheme for a bare host:port
    proxy = urlsplit(chosen)
    if proxy.scheme not in ("http", "https"):
        raise ValueError(
            f"the forward proxy {proxy.scheme}://{proxy.hostname} is not supported: "
            "use an http:// or https:// proxy (XAI_PROXY_URL, HTTPS_PROXY, ALL_PROXY)"
        )
    netloc = proxy.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if proxy.port is not None:
        netloc = f"{netloc}:{proxy.port}"
    url = urlunsplit((proxy.scheme, netloc, proxy.path, "", ""))
    if proxy.username is None:
        return ForwardProxy(url, {}, url)
    login, password = unquote(proxy.username), unquote(proxy.password or "")
    credentials = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    address = f"{proxy.scheme}://{proxy.netloc}"  # as given, still percent-encoded
    return ForwardProxy(url, {"Proxy-Authorization": f"Basic {credentials}"}, address)


@dataclass(frozen=True, slots=True)
class GrpcTarget:
    """A parsed gRPC upstream URL: grpcs://host:port (TLS) or grpc://host:port."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> GrpcTarget:
        parts = urlsplit(url)
        if parts.scheme not in {"grpc", "grpcs"} or not parts.hostname:
            raise ValueError(f"XAI_GRPC_URL must be grpcs://host:port or grpc://host:port: {url}")
        tls = parts.scheme == "grpcs"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def http_url(self) -> str:
        """The same host and port as an http(s) URL: the form the proxy rule reads."""
        return f"{'https' if self.tls else 'http'}://{self.address}"


def grpc_url_of(settings: Settings) -> str | None:
    """Where gRPC calls go: XAI_GRPC_URL, else xAI's host (its region's); None: nowhere."""
    if settings.upstream.grpc_url:
        return settings.upstream.grpc_url
    if settings.upstream.preset != "xai":
        # OpenRouter, CometAPI and Cloudflare speak no gRPC, and their keys mean nothing
        # to api.x.ai: sending them there would hand a third party's key to xAI.
        return None
    if settings.upstream.region:
        return f"grpcs://{settings.upstream.region}.api.x.ai:443"
    return DEFAULT_GRPC_URL


def preset_headers_of(settings: Settings) -> tuple[tuple[str, str], ...]:
    """Headers the preset's access point needs on every request, besides the key."""
    preset = PRESETS[settings.upstream.preset]
    headers = dict(preset.extra_headers)
    # The gateway's token is for Cloudflare only: never hand it to another upstream.
    if settings.upstream.cloudflare_aig_token is not None and preset.name == "cloudflare":
        token = settings.upstream.cloudflare_aig_token.get_secret_value()
        headers["cf-aig-authorization"] = f"Bearer {token}"
    return tuple(headers.items())


def tls_context(roots: bytes) -> ssl.SSLContext:
    """Verification against `roots`, speaking HTTP/1.1 (WebSocket's handshake is HTTP/1.1)."""
    # Text outside the PEM blocks (a bundle's comments) may be any encoding: not needed.
    context = ssl.create_default_context(cadata=roots.decode("ascii", "ignore"))
    # HTTP/1.1 only (docs/upstream-client.md: HTTP/2 is not offered upstream).
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where every protocol's calls go, with which headers, trusted roots and proxy."""

    preset: Preset
    # HTTP's base URL (WebSocket's with the scheme swapped), e.g. https://api.x.ai/v1.
    base_url: str
    preset_headers: tuple[tuple[str, str], ...] = field(repr=False)
    # certifi's roots and the configured extra CAs, as PEM (what grpc takes).
    roots: bytes = field(repr=False)
    # The same roots as one context, shared by HTTP and WebSocket connections.
    tls: ssl.SSLContext = field(repr=False, compare=False)
    proxy_rule: ProxyRule = field(repr=False)
    # The forward proxy of the base URL's host: HTTP's and WebSocket's.
    proxy: ForwardProxy | None
    # gRPC's target URL, or None where the upstream speaks no gRPC.
    grpc_url: str | None

    @classmethod
    def from_settings(cls, settings: Settings) -> Upstream:
        """Build the target; ValueError for a proxy that cannot work (the start reports it)."""
        base_url = settings.upstream.effective_base_url
        roots = trusted_roots(settings)
        rule = ProxyRule.of(settings)
        return cls(
            preset=PRESETS[settings.upstream.preset],
            base_url=base_url,
            preset_headers=preset_headers_of(settings),
            roots=roots,
            tls=tls_context(roots),
            proxy_rule=rule,
            proxy=rule.proxy_for(base_url),
            grpc_url=grpc_url_of(settings),
        )

    def headers(self, upstream_key: str) -> list[tuple[str, str]]:
        """The headers every HTTP request and WebSocket handshake carries: the preset's, the key."""
        return [*self.preset_headers, ("authorization", f"Bearer {upstream_key}")]

    @property
    def ws_base_url(self) -> str:
        """The base URL with its scheme swapped for the WebSocket one (https -> wss)."""
        scheme, sep, rest = self.base_url.partition("://")
        return ("wss" if scheme == "https" else "ws") + sep + rest

    def grpc_proxy(self, target: GrpcTarget) -> ForwardProxy | None:
        """The forward proxy of the gRPC target; ValueError for one grpc cannot speak to."""
        proxy = self.proxy_rule.proxy_for(target.http_url)
        if proxy is not None and proxy.scheme != "http":
            # grpc's CONNECT client speaks plain HTTP to the proxy; given another, it
            # would quietly connect directly.
            raise ValueError(
                f"gRPC cannot use the forward proxy {proxy.url}: grpc speaks to proxies over "
                "http:// only (set GROK_PROXY_GRPC_PORT=0, or use an http:// proxy)"
            )
        return proxy


# The last target built, and for which settings: one per worker, shared by every protocol.
_built: tuple[weakref.ref[Settings], Upstream] | None = None


def upstream_of(settings: Settings) -> Upstream:
    """The upstream target of these settings, built on first use and shared from then on."""
    global _built  # noqa: PLW0603 - one target per settings object, built once
    if _built is not None and _built[0]() is settings:
        return _built[1]
    upstream = Upstream.from_settings(settings)
    _built = (weakref.ref(settings), upstream)
    return upstream
