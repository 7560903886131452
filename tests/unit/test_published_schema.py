"""Never stricter than xAI: requests valid under xAI's published schema reach xAI unchanged.

Hypothesis (through schemathesis) generates schema-valid requests for every operation of
xAI's OpenAPI document (the copy the proxy ships, src/grok_proxy/schemas/xai-openapi.json);
each goes through the app, under /v1 and /api/v1, to a recording upstream (a small
aiohttp server). None may be refused by the proxy, and each must arrive with the same
method, path, query string and body (JSON-equal; multipart byte for byte). Generation is
derandomized and bounded (EXAMPLES per operation), so the run is the same every time.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings

from grok_proxy import schemas
from grok_proxy.app import create_app
from grok_proxy.config import Settings
from tests.unit.harness import AUTH

pytestmark = pytest.mark.anyio

SPEC = Path(schemas.__file__).parent / "xai-openapi.json"
EXAMPLES = 6
HOST = "http://proxy.test"


@dataclass(frozen=True, slots=True)
class Sent:
    """One generated request as the caller sends it (path and query below the prefix)."""

    label: str
    method: str
    target: str  # path below /v1, query string included, percent-encoded
    body: bytes | None
    content_type: str | None
    json: Any
    query: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class Arrived:
    method: str
    target: str
    body: bytes
    content_type: str | None


@functools.cache
def generated() -> list[Sent]:
    """EXAMPLES schema-valid requests per operation of the published document (made once,
    when a test first asks, not when the module is collected)."""
    schema = schemathesis.openapi.from_path(str(SPEC))
    sent: list[Sent] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) == 33  # every operation of the August 2026 document
    for operation in operations:
        sent.extend(as_sent(operation.label, case) for case in examples_of(operation))
    return sent


def examples_of(operation: Any) -> list[schemathesis.Case[Any]]:
    """The first EXAMPLES requests Hypothesis generates for `operation` (derandomized)."""
    found: list[schemathesis.Case[Any]] = []

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def collect(case: schemathesis.Case[Any]) -> None:
        found.append(case)

    collect()
    return found


def as_sent(label: str, case: schemathesis.Case[Any]) -> Sent:
    kwargs = case.as_transport_kwargs(base_url=HOST)
    path = urlsplit(kwargs["url"]).path.removeprefix("/v1")
    params = {name: str(value) for name, value in (kwargs.get("params") or {}).items()}
    target = path + (f"?{urlencode(params)}" if params else "")
    query = {name: [value] for name, value in params.items()}
    if "json" in kwargs:
        body = json.dumps(kwargs["json"], ensure_ascii=False).encode()
        return Sent(label, case.method, target, body, "application/json", kwargs["json"], query)
    if "files" in kwargs:
        files = [(name, _file(value)) for name, value in kwargs["files"]]
        built = httpx.Request(case.method, HOST, files=files, data=kwargs.get("data") or {})
        built.read()
        content_type = built.headers["content-type"]
        return Sent(label, case.method, target, built.content, content_type, None, query)
    return Sent(label, case.method, target, None, None, None, query)


def _file(value: tuple[Any, Any]) -> tuple[str | None, bytes]:
    filename, content = value[:2]
    if not isinstance(content, bytes):
        content = (content if isinstance(content, str) else json.dumps(content)).encode()
    return filename, content


@asynccontextmanager
async def recording_upstream() -> AsyncIterator[tuple[str, list[Arrived]]]:
    """An HTTP server that answers `{}` to anything and records what arrived."""
    arrived: list[Arrived] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        arrived.append(
            Arrived(request.method, request.raw_path, body, request.headers.get("content-type"))
        )
        return web.json_response({})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1", arrived
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
async def test_every_schema_valid_request_reaches_xai_unchanged(prefix: str) -> None:
    cases = generated()
    assert {case.label for case in cases} >= {"POST /v1/chat/completions", "POST /v1/files"}
    failures: list[str] = []
    async with recording_upstream() as (base_url, arrived):
        async with proxied_app(base_url) as client:
            for case in cases:
                headers = dict(AUTH)
                if case.content_type:
                    headers["content-type"] = case.content_type
                before = len(arrived)
                response = await client.request(
                    case.method, prefix + case.target, content=case.body, headers=headers
                )
                problem = mismatch(case, response, arrived[before:])
                if problem:
                    failures.append(f"{case.label} {case.target} {case.body!r:.300}: {problem}")
    assert not failures, f"{len(failures)} of {len(cases)}:\n" + "\n".join(failures[:20])


def mismatch(case: Sent, response: httpx.Response, arrived: list[Arrived]) -> str | None:
    """What differs between the request sent and the one that reached upstream, if anything."""
    if response.status_code != 200 or len(arrived) != 1:
        return f"refused: {response.status_code} {response.text:.300}"
    got = arrived[0]
    path, _, query = got.target.partition("?")
    sent_path = case.target.partition("?")[0]
    if got.method != case.method or path != "/v1" + sent_path:
        return f"arrived as {got.method} {got.target}"
    if parse_qs(query, keep_blank_values=True) != case.query:
        return f"query arrived as {query!r}"
    if case.json is not None or case.content_type == "application/json":
        return None if json.loads(got.body) == case.json else f"body arrived as {got.body!r:.300}"
    if case.body is not None and (got.body != case.body or got.content_type != case.content_type):
        return f"multipart body arrived as {got.content_type} {got.body!r:.300}"
    return None


# Requests the proxy used to refuse although xAI's schema accepts them (issue 21).
ACCEPTED_BY_XAI = [
    ("/chat/completions", {"messages": [{"role": "user", "content": "no model: xAI decides"}]}),
    (
        "/chat/completions",
        {
            "model": "grok-4",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"file_id": "file-1"}},
                        {"type": "text", "text": "x", "detail": None},
                    ],
                }
            ],
        },
    ),
    ("/chat/completions", {"model": "g", "messages": [], "stop": ["a", "b", "c", "d", "e"]}),
    ("/chat/completions", {"model": "g", "messages": [], "max_tokens": 0}),
    ("/chat/completions", {"model": "g", "tools": [{"type": "function", "function": {}}]}),
    ("/completions", {"model": "g", "prompt": "x", "presence_penalty": 7.5}),
    ("/embeddings", {"model": "v1", "input": {"String": "xAI's schema form"}, "dimensions": 0}),
    ("/messages", {"model": "g", "messages": [{"role": "system", "content": "documented"}]}),
    ("/messages", {"model": "g", "max_tokens": 9, "messages": [], "top_k": -1}),
    ("/messages", {"model": "g", "max_tokens": 9, "tools": [{"type": "mcp_toolset"}]}),
    ("/images/generations", {"n": 2}),
    ("/responses", {"model": "g"}),
    ("/tokenize-text", {"text": "no model"}),
]


@pytest.mark.parametrize(("route", "body"), ACCEPTED_BY_XAI)
async def test_requests_xai_accepts_are_forwarded_as_sent(route: str, body: Any) -> None:
    async with recording_upstream() as (base_url, arrived):
        async with proxied_app(base_url) as client:
            raw = json.dumps(body).encode()
            response = await client.post(f"/v1{route}", content=raw, headers=AUTH)
    assert response.status_code == 200, response.text
    assert [(hit.target, hit.body) for hit in arrived] == [(f"/v1{route}", raw)]


@asynccontextmanager
async def proxied_app(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(xai_base_url=base_url, xai_max_retries=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=HOST) as client:
            yield client
