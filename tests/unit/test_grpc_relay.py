"""Where gRPC calls go, through which proxy, and which metadata follows them."""

from __future__ import annotations

import socket

import pytest

from grok_proxy.calls.upstream import GrpcTarget, grpc_url_of
from grok_proxy.config import Settings
from grok_proxy.observability import metrics
from grok_proxy.relays.grpc import _relayable, _upstream_metadata, port_is_free


def test_upstream_is_xai_its_region_or_the_setting() -> None:
    assert grpc_url_of(Settings(_env_file=None)) == "grpcs://api.x.ai:443"
    regional = Settings(_env_file=None, xai_region="us-east-1")
    assert grpc_url_of(regional) == "grpcs://us-east-1.api.x.ai:443"
    explicit = Settings(_env_file=None, xai_grpc_url="grpc://127.0.0.1:9101")
    assert grpc_url_of(explicit) == "grpc://127.0.0.1:9101"


def test_access_points_without_grpc_get_no_relay() -> None:
    # An OpenRouter key must not be sent to api.x.ai.
    assert grpc_url_of(Settings(_env_file=None, xai_upstream="openrouter")) is None


def test_target_parsing() -> None:
    assert GrpcTarget.parse("grpcs://api.x.ai:443") == GrpcTarget("api.x.ai", 443, tls=True)
    assert GrpcTarget.parse("grpc://127.0.0.1:9101").address == "127.0.0.1:9101"
    assert GrpcTarget.parse("grpcs://api.x.ai").port == 443
    with pytest.raises(ValueError, match="XAI_GRPC_URL"):
        GrpcTarget.parse("https://api.x.ai")


def test_only_allowed_metadata_goes_upstream() -> None:
    incoming: dict[str, str | bytes] = {
        "authorization": "Bearer caller",
        "x-grok-conv-id": "c1",
        "xai-sdk-version": "python/1.21.0",
        "cookie": "a=b",
        "proxy-authorization": "Basic eA==",
        "x-request-id": "forged",
    }
    sent = dict(_upstream_metadata(incoming, "server-key", "rid-1"))
    assert sent == {
        "authorization": "Bearer server-key",
        "x-request-id": "rid-1",
        "x-grok-conv-id": "c1",
        "xai-sdk-version": "python/1.21.0",
    }


def test_metadata_grpc_manages_itself_is_not_relayed_back() -> None:
    upstream = [("content-type", "application/grpc"), ("grpc-status", "0"), ("x-trace", "t")]
    assert _relayable(upstream) == (("x-trace", "t"),)
    assert _relayable(None) == ()


def test_port_in_use_is_noticed() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert not port_is_free("127.0.0.1", taken.getsockname()[1])


def test_method_labels_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    # Callers name methods, so a flood of made-up ones must not grow the metrics unbounded.
    monkeypatch.setattr(metrics, "_methods", {})
    monkeypatch.setattr(metrics, "MAX_METHODS", 2)
    assert metrics.method_series("/a.A/One").label == "/a.A/One"
    assert metrics.method_series("/a.A/Two").label == "/a.A/Two"
    assert metrics.method_series("/made.Up/Three").label == "other"
    assert metrics.method_series("/made.Up/Four").label == "other"
    assert metrics.method_series("/a.A/One").label == "/a.A/One"
