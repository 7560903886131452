"""Schemathesis against the proxy's own OpenAPI schema, with the simulator upstream.

Bounded here (FUZZ_EXAMPLES per operation, default 8); docs/reliability.md has the
longer run. What must hold for any generated request: no 500 (the proxy's own failure),
no stack trace or key in the body, and every error answered in the one envelope.
(schemathesis' own pytest plugin does not run under pytest 9, so each operation's
Hypothesis strategy is driven directly.)
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import KEY
from tests.processes import Proxy

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def operations(live: Proxy) -> dict[str, Any]:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    found = {}
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        found[operation.label] = operation
    return found


def check(case: schemathesis.Case[Any]) -> None:
    response = case.call(headers={"authorization": f"Bearer {KEY}"}, timeout=15)
    assert response.status_code != 500, (case.method, case.formatted_path, response.text)
    assert "Traceback" not in response.text
    assert KEY not in response.text
    if response.status_code >= 400 and response.content:
        body = response.json()
        if case.formatted_path.endswith("/messages"):
            assert body["type"] == "error"
            assert body["error"]["message"]
        else:
            assert isinstance(body["error"]["message"], str), body
            assert body["error"]["type"]


def test_every_operation_survives_generated_requests(operations: dict[str, Any]) -> None:
    assert len(operations) >= 15
    for label, operation in sorted(operations.items()):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case[Any]) -> None:
            check(case)

        try:
            run()
        except AssertionError as failure:
            raise AssertionError(f"{label}: {failure}") from failure
