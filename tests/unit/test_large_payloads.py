"""Issue 24, item 11: one large payload must not hold the event loop, so every other caller
keeps being answered. Here, what proves it without a clock: where the work happens."""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

import httpx
import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from grok_proxy.app import create_app
from grok_proxy.calls import bodies, presets
from grok_proxy.calls import forwarder as forwarder_module
from grok_proxy.calls.sse import RELAY_PIECE_BYTES
from grok_proxy.config import Settings
from grok_proxy.relays.websocket import Session, WebSocketRelay
from grok_proxy.routes import shared
from grok_proxy.teams import gate as gate_module
from grok_proxy.teams import ws_sessions
from grok_proxy.teams.errors import NotAllowed
from grok_proxy.teams.gate import TeamGate, body_facts
from grok_proxy.teams.members import Limits, Member
from tests.unit.harness import AUTH, chat, proxied, serving, upstream

pytestmark = pytest.mark.anyio

OK = {"id": "x", "object": "chat.completion", "choices": []}
JSON = {"content-type": "application/json"}


def large(**fields: Any) -> bytes:
    """A chat body just past the size that is parsed in a parser process."""
    message = {"role": "user", "content": "hi"}
    count = bodies.LARGE_BODY_BYTES // len(orjson.dumps(message)) + 1
    body = orjson.dumps({"model": "grok-4", "messages": [message] * count, **fields})
    assert bodies.is_large(body)
    return body


def process_id(data: Any) -> int:
    return os.getpid()


async def test_parse_elsewhere_reads_the_body_in_another_process() -> None:
    assert await bodies.parse_elsewhere(b"{}", process_id) != os.getpid()


@pytest.fixture
def parsed_here(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the bodies the serving process parses itself."""
    sizes: list[int] = []

    def counted(body: bytes) -> Any:
        sizes.append(len(body))
        return bodies.parse_json(body)

    monkeypatch.setattr(shared, "parse_json", counted)
    return sizes


async def test_a_large_body_is_validated_elsewhere_and_forwarded_exactly(
    parsed_here: list[int],
) -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=OK)
    body = large()
    small = orjson.dumps(chat())
    async with proxied(router) as client:
        answer = await client.post("/api/v1/chat/completions", content=body, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert route.calls.last.request.content == body
        await client.post("/api/v1/chat/completions", content=small, headers=AUTH)
    assert parsed_here == [len(small)]  # the small one here, the large one elsewhere


async def test_a_large_body_that_fails_its_checks_is_refused_as_a_small_one_is(
    parsed_here: list[int],
) -> None:
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=OK)
    async with proxied(router) as client:
        wrong = await client.post("/api/v1/chat/completions", content=large(model=5), headers=AUTH)
        broken = await client.post("/api/v1/chat/completions", content=large()[:-1], headers=AUTH)
    assert wrong.status_code == 422
    assert wrong.json()["error"]["param"] == "model"
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "invalid_json"
    assert not route.called
    assert parsed_here == []


async def test_a_large_stream_asks_for_usage_as_a_small_one_does(parsed_here: list[int]) -> None:
    router = upstream()
    stream = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    route = router.post("/chat/completions").respond(
        200, headers={"content-type": "text/event-stream"}, content=stream + b"data: [DONE]\n\n"
    )
    body = large(stream=True, stream_options={"include_usage": False, "x": 1})
    async with proxied(router, capture_stream_usage=True) as client:
        answer = await client.post("/api/v1/chat/completions", content=body, headers=AUTH)
    assert answer.status_code == 200
    assert b"usage" not in answer.content  # asked for by the proxy, so taken out again
    sent = orjson.loads(route.calls.last.request.content)
    assert sent == {**orjson.loads(body), "stream_options": {"include_usage": True, "x": 1}}
    assert parsed_here == []


async def test_a_huge_stream_event_goes_out_exactly_in_bounded_pieces() -> None:
    """Each piece handed to the server is a short copy, and the server's flow control lets
    other callers' work run between them."""
    router = upstream()
    huge = b'data: {"choices":[{"delta":{"content":"' + b"x" * (3 * RELAY_PIECE_BYTES) + b'"}}]}'
    stream = huge + b"\r\n\r\ndata: [DONE]\r\n\r\n"
    router.post("/chat/completions").respond(
        200, headers={"content-type": "text/event-stream"}, content=stream
    )
    handed: list[bytes] = []
    async with serving(router) as base_url:
        app = create_app(Settings(xai_base_url=base_url, xai_max_retries=0))

        async def server(scope: Scope, receive: Receive, send: Send) -> None:
            async def handing(message: Message) -> None:
                if message["type"] == "http.response.body":
                    handed.append(message.get("body", b""))
                await send(message)

            await app(scope, receive, handing)

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=server)
            async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
                answer = await client.post(
                    "/api/v1/chat/completions", json=chat(stream=True), headers=AUTH
                )
    assert answer.content == stream  # complete, byte for byte, and not cut short
    assert b"".join(handed) == stream
    assert max(len(piece) for piece in handed) <= RELAY_PIECE_BYTES


class SilentUpstream:
    """An upstream session that says nothing and closes at once."""

    response = None
    subprotocol = None

    async def recv(self) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        return None


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("a WebSocket session never reaches the HTTP app")


async def test_a_session_ended_at_shutdown_ends_quietly_when_the_grace_runs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server cancels sessions still closing when its grace runs out. A session the
    drain ended returns instead of raising: re-raised, the server formats a traceback for
    each one, and for 2,000 sessions that held the event loop for 0.6 s."""

    async def silent(self: Session) -> SilentUpstream:
        return SilentUpstream()

    monkeypatch.setattr(Session, "open_upstream", silent)
    incoming: asyncio.Queue[Message] = asyncio.Queue()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await incoming.put({"type": "websocket.connect"})
    relay = WebSocketRelay(http_app, Settings(xai_base_url="http://127.0.0.1:9/v1"))
    scope = {"type": "websocket", "path": "/api/v1/realtime", "headers": []}
    session = Session(relay, scope, incoming.get, send)
    running = asyncio.ensure_future(session.run())
    while not sent:
        await asyncio.sleep(0.01)
    session.end("shutting down")  # the drain; the caller never answers the close
    while len(sent) < 2:
        await asyncio.sleep(0.01)
    running.cancel()  # the server's grace ran out
    await running
    assert [message["type"] for message in sent] == ["websocket.accept", "websocket.close"]
    assert sent[1]["code"] == 1001


@pytest.mark.parametrize("size", ["small", "large"])
async def test_the_team_gate_decides_on_the_same_facts_wherever_it_parses(
    monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    """A member's checks read BodyFacts: from a parse here for a small body (handed on to
    the route), from a parse in a parser process for a large one."""
    parsed_here: list[int] = []

    def counted(body: bytes) -> Any:
        parsed_here.append(len(body))
        return bodies.parse_json(body)

    monkeypatch.setattr(gate_module, "parse_json", counted)
    named = {
        "model": "grok-4",
        "previous_response_id": "resp_1",
        "batch_requests": [{"batch_request": {"a": {"model": "grok-3"}, "b": "odd"}}, {}],
        "max_tokens": 10,
        "deferred": True,
    }
    body = large(**named) if size == "large" else orjson.dumps(named)
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return pending.pop()

    scope: dict[str, Any] = {"type": "http", "method": "POST", "headers": []}
    team: Any = None  # reading a body needs none
    gate = TeamGate(http_app, team=team, admin=http_app, max_body_bytes=bodies.LARGE_BODY_BYTES * 2)
    facts, replay = await gate._body(scope, receive, "chat/completions")
    assert facts == body_facts(orjson.loads(body))
    assert facts is not None
    assert facts.references == [("response", "resp_1")]
    assert facts.batch_models == {"grok-3", None}
    assert (facts.model, facts.deferred, facts.output_limits) == (
        "grok-4",
        True,
        {"max_tokens": 10},
    )
    assert (await replay())["body"] == body  # the route gets the very bytes
    if size == "large":
        assert parsed_here == []
        assert bodies.PARSED_BODY not in scope
    else:
        assert parsed_here == [len(body)]
        assert scope[bodies.PARSED_BODY][0] is body


class Objects:
    """A team whose member owns only `resp_mine`, and whose limits admit every turn."""

    def __init__(self) -> None:
        self.asked: list[list[tuple[str, str]]] = []

    async def require_all(self, member: Member, named: list[tuple[str, str]]) -> None:
        self.asked.append(named)
        if any(object_id != "resp_mine" for _, object_id in named):
            raise NotAllowed("Not yours.", code="not_found")

    async def check(self, member: Member, route: str, model: str | None) -> None:
        return None


@pytest.mark.parametrize("size", ["small", "large"])
async def test_a_websocket_turn_is_decided_alike_wherever_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    """A member's session events: large ones are parsed in a parser process, and the same
    models and objects are refused."""
    parsed_here: list[int] = []

    def counted(body: bytes) -> Any:
        parsed_here.append(len(body))
        return bodies.parse_json(body)

    monkeypatch.setattr(ws_sessions, "parse_json", counted)
    team = Objects()
    member = Member(id="m", name="carol", limits=Limits(models=("grok-4",)))
    gate = ws_sessions.SessionGate(cast(Any, team), member, "responses", "grok-4")
    padding = "x" * (bodies.LARGE_BODY_BYTES if size == "large" else 10)

    async def answer(**event: Any) -> dict[str, Any] | None:
        refusal = await gate.from_caller(orjson.dumps({**event, "padding": padding}).decode())
        return None if refusal is None else orjson.loads(refusal)["error"]

    assert await answer(type="response.create", model="grok-4") is None
    assert await answer(type="response.create", previous_response_id="resp_mine") is None
    other = await answer(type="response.create", previous_response_id="resp_x", event_id="e1")
    assert other is not None
    assert (other["code"], other["event_id"]) == ("not_found", "e1")
    for refused in (
        {"type": "response.create", "model": "grok-3"},
        {"type": "response.create", "response": {"model": "grok-3"}},
        {"type": "response.create", "model": {"name": "grok-4"}},
        {"type": "session.update", "session": {"model": "grok-3"}},
    ):
        error = await answer(**refused)
        assert error is not None
        assert error["code"] == "model_not_allowed", refused
    assert team.asked[1:3] == [[("response", "resp_mine")], [("response", "resp_x")]]
    assert (parsed_here == []) is (size == "large")


class CountingJson:
    """orjson for the forwarder, counting the answers it parses in this process."""

    JSONDecodeError = orjson.JSONDecodeError

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def loads(self, data: bytes) -> Any:
        self.sizes.append(len(data))
        return orjson.loads(data)


def large_answer(model: str) -> bytes:
    """A chat completion just past the size that is read in a parser process."""
    content = "x" * bodies.LARGE_BODY_BYTES
    usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    message = {"role": "assistant", "content": content}
    answer = {"id": "c", "model": model, "choices": [{"message": message}], "usage": usage}
    return orjson.dumps(answer)


async def test_a_large_answer_is_read_and_rewritten_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under an aggregator preset, model names in answers go back to the caller's form: the
    # large answer is parsed (usage) and rewritten in a parser process, the small one here.
    parsed = CountingJson()
    monkeypatch.setattr(forwarder_module, "orjson", parsed)
    router = upstream()
    big = large_answer("x-ai/grok-4")
    small = orjson.dumps({"id": "s", "model": "x-ai/grok-4", "choices": []})
    router.post("/chat/completions").mock(
        side_effect=[httpx.Response(200, content=body, headers=JSON) for body in (big, small)]
    )
    async with proxied(router, xai_upstream="openrouter") as client:
        answer = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
        other = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert answer.status_code == 200
    assert answer.content == big.replace(b'"model":"x-ai/grok-4"', b'"model":"grok-4"')
    assert other.json()["model"] == "grok-4"
    assert parsed.sizes == [len(small)]


async def test_a_large_malformed_answer_is_a_502_as_a_small_one_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = CountingJson()
    monkeypatch.setattr(forwarder_module, "orjson", parsed)
    router = upstream()
    router.post("/chat/completions").respond(200, content=large_answer("grok-4")[:-1], headers=JSON)
    async with proxied(router) as client:
        answer = await client.post("/api/v1/chat/completions", json=chat(), headers=AUTH)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_malformed_response"
    assert parsed.sizes == []


async def test_a_large_body_gets_the_upstream_model_name_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed = CountingJson()
    monkeypatch.setattr(presets, "orjson", parsed)
    router = upstream()
    route = router.post("/chat/completions").respond(200, json=OK)
    body = large()
    async with proxied(router, xai_upstream="openrouter") as client:
        answer = await client.post("/api/v1/chat/completions", content=body, headers=AUTH)
    assert answer.status_code == 200, answer.text
    sent = route.calls.last.request.content
    assert sent == body.replace(b'"model":"grok-4"', b'"model":"x-ai/grok-4"')
    assert parsed.sizes == []
