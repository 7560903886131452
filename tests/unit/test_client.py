"""How the upstream client names a failure, and which forward proxy it picks (curl's rules)."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from grok_proxy.client import failure_of, forward_proxy
from grok_proxy.config import Settings
from grok_proxy.transport import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimedOut,
    ProtocolViolation,
    ReadTimedOut,
)

UPSTREAM = "https://api.x.ai/v1"
KEY = ConnectionKey("api.x.ai", 443, True, True, None, None, None)


def settings(xai_proxy_url: str = "") -> Settings:
    return Settings(_env_file=None, xai_proxy_url=xai_proxy_url)


def test_a_dns_failure_says_which_host_and_why() -> None:
    dns = aiohttp.ClientConnectorDNSError(KEY, socket.gaierror(-2, "Name or service not known"))
    failure = failure_of(dns)
    assert isinstance(failure, ConnectFailed)  # nothing was sent: safe to retry
    assert failure.message == "cannot connect to api.x.ai:443: Name or service not known"


def test_a_refusal_is_nothing_sent_and_a_bare_message_is_kept() -> None:
    refused = aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connection refused"))
    assert failure_of(refused).message == "cannot connect to api.x.ai:443: Connection refused"
    assert isinstance(failure_of(refused), ConnectFailed)
    cut = aiohttp.ServerDisconnectedError()
    assert isinstance(failure_of(cut), ConnectionLost)
    assert failure_of(cut).message == "Server disconnected"
    assert len(failure_of(aiohttp.ClientPayloadError("x" * 1000)).message) == 200


def test_timeouts_tell_the_connect_phase_from_a_silent_upstream() -> None:
    assert isinstance(failure_of(aiohttp.ConnectionTimeoutError()), ConnectTimedOut)
    assert isinstance(failure_of(aiohttp.SocketTimeoutError()), ReadTimedOut)


def test_an_answer_that_is_not_http_is_a_protocol_violation() -> None:
    info = aiohttp.RequestInfo(URL(UPSTREAM), "GET", CIMultiDictProxy(CIMultiDict()))
    bad = aiohttp.ClientResponseError(info, (), status=400, message="Invalid constant string")
    failure = failure_of(bad)
    assert isinstance(failure, ProtocolViolation)
    assert "Invalid constant string" in failure.message


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


def test_a_body_cut_short_reads_as_one_plain_sentence() -> None:
    from aiohttp.http_exceptions import TransferEncodingError

    try:
        try:
            raise TransferEncodingError("Not enough data to satisfy transfer length header.")
        except TransferEncodingError as cause:
            raise aiohttp.ClientPayloadError("Response payload is not completed") from cause
    except aiohttp.ClientPayloadError as exc:
        failure = failure_of(exc)
    assert isinstance(failure, ConnectionLost)
    assert failure.message == (
        "the answer was cut short (not enough data to satisfy transfer length header)"
    )
