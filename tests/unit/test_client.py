"""How the upstream client names a failure: the whole cause chain, readable."""

from __future__ import annotations

from grok_proxy.client import _causes


def test_a_dns_failure_keeps_its_whole_cause() -> None:
    text = (
        "Request failed: error sending request for url (https://api.x.ai/v1/models): "
        "client error (Connect): dns error: error resolving DNS: no records found for "
        'Query { name: Name("api.x.ai."), query_class: IN }'
    )
    reason = _causes(text)
    assert reason.startswith("dns error: error resolving DNS")
    assert "api.x.ai." in reason
    assert "https://" not in reason  # the URL is the proxy's business, not the reason


def test_a_refusal_and_a_bare_message() -> None:
    refused = (
        "Request failed: error sending request for url (http://127.0.0.1:1/): "
        "client error (Connect): tcp connect error: Connection refused (os error 111)"
    )
    assert _causes(refused) == "tcp connect error: Connection refused (os error 111)"
    assert _causes("operation timed out") == "operation timed out"
    assert len(_causes("x" * 1000)) == 200
