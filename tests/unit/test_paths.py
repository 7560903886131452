"""Dot-segment removal (RFC 3986 5.2.4) and the paths that are refused."""

from __future__ import annotations

import pytest

from grok_proxy.serving.paths import UnsafePath, remove_dot_segments


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/api/v1/chat/completions", "/api/v1/chat/completions"),
        ("/api/v1/models/../credits", "/api/v1/credits"),
        ("/api/v1/models/%2e%2e/credits", "/api/v1/credits"),
        ("/api/v1/models/%2E./credits", "/api/v1/credits"),
        ("/api/v1/./models/./grok-4.1", "/api/v1/models/grok-4.1"),
        ("/api/v1/models/..", "/api/v1/"),
        ("/api/v1/a//../b", "/api/v1/a/b"),
        ("/v1/models/../files/f%20x", "/v1/files/f%20x"),
        ("/health/../metrics", "/metrics"),
        ("/openapi.json", "/openapi.json"),
        ("/api/v1/files/a%2Fb", "/api/v1/files/a%2Fb"),
    ],
)
def test_dot_segments_are_removed_and_the_rest_kept_as_sent(raw: str, normal: str) -> None:
    assert remove_dot_segments(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "/api/v1/..",
        "/api/v1/../../openai/chat/completions",
        "/api/v1/%2e%2e/%2e%2e/openai/chat/completions",
        "/v1/../api/v1/credits",
        "/api/v1/models/..%2fcredits",
        "/api/v1/models/%2e%2e%5ccredits",
        "/api/v1/models/..\\credits",
    ],
)
def test_paths_that_leave_the_api_prefix_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePath):
        remove_dot_segments(raw)
