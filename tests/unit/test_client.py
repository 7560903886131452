"""How the upstream client names a failure (its forward proxy: tests/unit/test_upstream.py)."""

from __future__ import annotations

import socket

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from grok_proxy.calls.client import failure_of
from grok_proxy.calls.transport import (
    ConnectFailed,
    ConnectionLost,
    ConnectTimedOut,
    ProtocolViolation,
    ReadTimedOut,
)

UPSTREAM = "https://api.x.ai/v1"
KEY = ConnectionKey("api.x.ai", 443, True, True, None, None, None)


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
