"""How a shared proxy's refusals read over gRPC and WebSocket, and its gRPC method table."""

from __future__ import annotations

import grpc
import orjson
import pytest
from google.protobuf import descriptor_pool

from grok_proxy.calls.errors import ProxyError
from grok_proxy.teams.errors import BudgetExceeded, NotAllowed, ObjectNotFound, RateLimited
from grok_proxy.teams.grpc_calls import METHODS, status_of
from grok_proxy.teams.ws_sessions import error_event


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RateLimited("Over 2 requests per minute.", 12.2), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (BudgetExceeded("Budget used.", 3600), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (
            NotAllowed("Not that model.", code="model_not_allowed"),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (ObjectNotFound("No response with id r."), grpc.StatusCode.NOT_FOUND),
    ],
)
def test_refusals_become_the_grpc_codes_xai_uses(error: ProxyError, code: grpc.StatusCode) -> None:
    got, details, trailing = status_of(error)
    assert got == code
    assert details.startswith(error.message)
    if isinstance(error, RateLimited):
        # The retry time is in the details (what users read) and in the trailers.
        retry = error.headers["retry-after"]
        assert details.endswith(f"Retry after {retry} s.")
        assert trailing == [("retry-after", retry)]
    else:
        assert trailing == []


def test_a_refused_turn_is_an_xai_error_event() -> None:
    refused = orjson.loads(error_event(RateLimited("Over the limit.", 5), {"event_id": "ev_1"}))
    assert refused == {
        "type": "error",
        "status": 429,
        "error": {
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "message": "Over the limit. Retry after 5 s.",
            "param": None,
            "event_id": "ev_1",
        },
    }
    forbidden = orjson.loads(error_event(NotAllowed("No.", code="model_not_allowed")))
    assert forbidden["status"] == 403
    assert forbidden["error"]["type"] == "permission_error"
    assert "event_id" not in forbidden["error"]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_decodes_the_sdks_own_messages(name: str) -> None:
    method = METHODS[name]
    service, _, rpc = name.removeprefix("/").partition("/")
    described = descriptor_pool.Default().FindMethodByName(f"{service}.{rpc}")
    assert method.request.DESCRIPTOR.full_name == described.input_type.full_name
    if method.answer is not None:
        assert method.answer.DESCRIPTOR.full_name == described.output_type.full_name
