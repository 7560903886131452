"""The one upstream target: HTTP, WebSocket and gRPC reach the upstream by the same rules."""

from __future__ import annotations

import aiohttp
import pytest

from grok_proxy.calls.client import HttpClient
from grok_proxy.calls.upstream import ForwardProxy, GrpcTarget, ProxyRule, Upstream, upstream_of
from grok_proxy.config import Settings
from grok_proxy.relays.grpc import proxy_option
from grok_proxy.relays.websocket import WebSocketRelay

UPSTREAM = "https://api.x.ai/v1"
XAI_GRPC = GrpcTarget("api.x.ai", 443, tls=True)
PROXY_VARIABLES = ("grpc_proxy", "all_proxy", "https_proxy", "http_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def settings(xai_proxy_url: str = "", **fields: str) -> Settings:
    return Settings(_env_file=None, xai_proxy_url=xai_proxy_url, **fields)  # type: ignore[arg-type]


def forward_proxy(configured: Settings, url: str) -> ForwardProxy | None:
    return ProxyRule.of(configured).proxy_for(url)


def test_https_proxy_from_the_environment_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://me:s%40cret@proxy.corp:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    chosen = forward_proxy(settings(), UPSTREAM)
    assert chosen is not None
    assert chosen.url == "http://proxy.corp:3128"  # no credentials in the URL aiohttp logs
    assert chosen.headers == {"Proxy-Authorization": aiohttp.encode_basic_auth("me", "s@cret")}


def test_all_proxy_is_the_fallback_and_no_proxy_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ALL_PROXY", "proxy.corp:8080")
    monkeypatch.setenv("NO_PROXY", "")
    chosen = forward_proxy(settings(), UPSTREAM)
    assert chosen is not None and chosen.url == "http://proxy.corp:8080"
    monkeypatch.setenv("NO_PROXY", ".x.ai")
    assert forward_proxy(settings(), UPSTREAM) is None


def test_xai_proxy_url_overrides_the_environment_and_direct_ignores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy:3128")
    monkeypatch.setenv("NO_PROXY", "")
    chosen = forward_proxy(settings(xai_proxy_url="http://mine:3128"), UPSTREAM)
    assert chosen is not None and chosen.url == "http://mine:3128"
    assert forward_proxy(settings(xai_proxy_url="direct"), UPSTREAM) is None


def test_a_socks_proxy_is_refused_with_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "")
    with pytest.raises(ValueError, match=r"socks5://proxy\.corp is not supported"):
        forward_proxy(settings(xai_proxy_url="socks5://proxy.corp:1080"), UPSTREAM)


def test_every_protocol_reads_the_one_target_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://me:pw@proxy.corp:3128")
    configured = settings(
        xai_upstream="cloudflare",
        cloudflare_account_id="a",
        cloudflare_gateway_id="g",
        cloudflare_aig_token="cf-token",
    )
    upstream = upstream_of(configured)
    assert upstream_of(configured) is upstream
    client = HttpClient(configured)
    relay = WebSocketRelay(lambda *_: None, configured)  # type: ignore[arg-type]
    assert client.proxy is upstream.proxy and client.tls is upstream.tls
    assert relay.upstream is upstream and relay.tls is upstream.tls
    assert relay.reach == {"proxy": "http://me:pw@proxy.corp:3128"}
    assert upstream.headers("xai-key") == [
        ("cf-aig-authorization", "Bearer cf-token"),
        ("authorization", "Bearer xai-key"),
    ]


def test_grpc_follows_xai_proxy_url_and_no_proxy_as_http_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("https_proxy", "http://env-proxy:3128")
    mine = Upstream.from_settings(settings("http://me:pw@mine:3128"))
    assert proxy_option(mine, XAI_GRPC) == [("grpc.http_proxy", "http://me:pw@mine:3128")]
    environment = Upstream.from_settings(settings())
    assert proxy_option(environment, XAI_GRPC) == [("grpc.http_proxy", "http://env-proxy:3128")]
    monkeypatch.setenv("NO_PROXY", ".x.ai")
    bypassed = Upstream.from_settings(settings("http://mine:3128"))
    assert bypassed.proxy is None
    # Told to use none, grpc does not read https_proxy behind the rule's back.
    assert proxy_option(bypassed, XAI_GRPC) == [("grpc.enable_http_proxy", 0)]


def test_direct_means_no_proxy_for_grpc_either(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://env-proxy:3128")
    monkeypatch.setenv("grpc_proxy", "http://grpc-proxy:3128")
    direct = Upstream.from_settings(settings("direct"))
    assert direct.proxy is None
    assert proxy_option(direct, XAI_GRPC) == [("grpc.enable_http_proxy", 0)]


def test_an_https_proxy_grpc_cannot_speak_to_is_refused_not_bypassed() -> None:
    upstream = Upstream.from_settings(settings("https://proxy.corp:3129"))
    assert upstream.proxy is not None and upstream.proxy.url == "https://proxy.corp:3129"
    with pytest.raises(ValueError, match=r"gRPC cannot use the forward proxy https://proxy\.corp"):
        upstream.grpc_proxy(XAI_GRPC)


def test_a_bare_host_and_port_is_an_http_proxy_for_every_protocol() -> None:
    upstream = Upstream.from_settings(settings("proxy.corp:3128"))
    assert upstream.proxy is not None and upstream.proxy.address == "http://proxy.corp:3128"
    assert proxy_option(upstream, XAI_GRPC) == [("grpc.http_proxy", "http://proxy.corp:3128")]


def test_the_websocket_base_follows_the_http_base() -> None:
    assert Upstream.from_settings(settings()).ws_base_url == "wss://api.x.ai/v1"
    local = Upstream.from_settings(settings(xai_base_url="http://127.0.0.1:9100/v1"))
    assert local.ws_base_url == "ws://127.0.0.1:9100/v1"


def test_credentials_stay_out_of_the_url_a_library_may_log() -> None:
    chosen = Upstream.from_settings(settings("http://me:s%40cret@proxy.corp:3128")).proxy
    assert chosen is not None
    assert chosen.url == "http://proxy.corp:3128"
    assert "s%40cret" not in repr(chosen) and "Basic" not in repr(chosen)
    assert chosen.headers == {"Proxy-Authorization": aiohttp.encode_basic_auth("me", "s@cret")}
