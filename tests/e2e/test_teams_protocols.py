"""A shared proxy's WebSocket sessions and gRPC calls are members' requests like HTTP ones:
checked before anything goes upstream, counted per member, their objects kept apart.

Real parts only: the proxy process in front of the simulator, driven by the `websockets`
client and xAI's own SDK; the simulator's counters say what reached "xAI".
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import grpc
import httpx
import orjson
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol
from xai_sdk import Client
from xai_sdk.chat import user
from xai_sdk.proto.v6 import chat_pb2, chat_pb2_grpc, embed_pb2, embed_pb2_grpc, files_pb2

from tests.e2e.test_teams import (  # noqa: F401 - `database` is a fixture used below
    Shared,
    cli,
    database,
    database_text,
    key_in,
    team_settings,
)
from tests.processes import Simulator, free_port, proxy

TIMEOUT = 15.0


@pytest.fixture(scope="module")
def team(database: dict[str, str], sim: Simulator) -> Iterator[Shared]:  # noqa: F811
    """A shared proxy (SQLite, then PostgreSQL) with its gRPC listener on."""
    settings = team_settings(database)
    # A member in the database is what makes the proxy shared (as a team starts).
    alice = key_in(cli(settings, "members", "add", "alice"))
    with proxy(
        sim.base_url,
        workers=1,
        grok_proxy_grpc_port=str(free_port()),
        xai_grpc_url=f"grpc://{sim.grpc_target}",
        **settings,
    ) as running:
        shared = Shared(settings, running, {"alice": alice})
        shared.add("bob")
        yield shared


# clients
def ws(team: Shared, member: str, path: str) -> ClientConnection:
    url = f"ws{team.proxy.api.removeprefix('http')}/{path}"
    headers = {"Authorization": f"Bearer {team.keys[member]}"}
    conn: ClientConnection = connect(
        url, additional_headers=headers, open_timeout=TIMEOUT, close_timeout=TIMEOUT
    )
    return conn


def ws_refusal(team: Shared, member: str, path: str) -> tuple[int, dict[str, str], Any]:
    """The status, headers and error of a refused handshake."""
    with pytest.raises(InvalidStatus) as refused:
        ws(team, member, path)
    response = refused.value.response
    return response.status_code, dict(response.headers), orjson.loads(response.body or b"")["error"]


def send(conn: ClientConnection, **payload: Any) -> None:
    conn.send(orjson.dumps(payload).decode())


def event(conn: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(conn.recv(timeout=TIMEOUT))
    return data


def events_until(conn: ClientConnection, last: str) -> list[dict[str, Any]]:
    seen = [event(conn)]
    while seen[-1]["type"] != last:
        seen.append(event(conn))
    return seen


def open_session_received(sim: Simulator, path: str) -> int:
    """Messages the simulator's one open session on `path` has received so far."""
    records = httpx.get(f"{sim.url}/_sim/websockets").json()
    (record,) = [r for r in records if r["path"].endswith(path) and r["open"]]
    return len(record["received"])


def sdk(team: Shared, member: str) -> Client:
    return Client(
        api_key=team.keys[member],
        api_host=team.proxy.grpc_target,
        use_insecure_channel=True,
        timeout=TIMEOUT,
    )


def grpc_error(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def metadata(team: Shared, member: str) -> tuple[tuple[str, str | bytes], ...]:
    return (("authorization", f"Bearer {team.keys[member]}"),)


def counted(sim: Simulator, name: str) -> int:
    return sim.stats().get(name, 0)


def usage_rows(team: Shared, member: str) -> dict[str, dict[str, Any]]:
    answer = team.admin("GET", f"/usage?member={member}")
    assert answer.status_code == 200, answer.text
    return {row["model"]: row for row in answer.json()["data"]}


# usage
def test_websocket_sessions_and_turns_are_counted(team: Shared) -> None:
    team.add("wes")
    turns = []
    with ws(team, "wes", "responses") as conn:
        for text in ("Hello", "And then?"):
            send(conn, type="response.create", model="grok-4", input=text)
            turns.append(events_until(conn, "response.completed")[-1]["response"]["usage"])
    voice_model = "grok-voice-latest@pace=1"
    with ws(team, "wes", f"realtime?model={voice_model}") as conn:
        events_until(conn, "conversation.created")
        send(conn, type="response.create")
        voice = events_until(conn, "response.done")[-1]["response"]["usage"]
    with ws(team, "wes", "tts?voice=eve") as conn:
        send(conn, type="text.delta", delta="Hello there")
        send(conn, type="text.done")
        events_until(conn, "audio.done")

    rows = usage_rows(team, "wes")
    # Each turn of the Responses session: one request with its tokens and cost.
    assert rows["grok-4"]["requests"] == 2
    assert rows["grok-4"]["prompt_tokens"] == sum(t["input_tokens"] for t in turns)
    assert rows["grok-4"]["completion_tokens"] == sum(t["output_tokens"] for t in turns)
    # What xAI reported for each turn (1 USD = 1e10 ticks), not a price-table estimate.
    assert all(t["cost_in_usd_ticks"] > 0 for t in turns)
    assert rows["grok-4"]["cost_usd"] == pytest.approx(
        sum(t["cost_in_usd_ticks"] for t in turns) / 1e10, abs=1e-9
    )
    # The voice session: its opening and its one response, with the response's tokens.
    assert rows[voice_model]["requests"] == 2
    assert rows[voice_model]["prompt_tokens"] == voice["input_tokens"]
    assert rows[voice_model]["completion_tokens"] == voice["output_tokens"]
    # Sessions opened without a model (Responses mode names it per turn; TTS never does).
    assert rows["-"]["requests"] == 2
    assert rows["-"]["prompt_tokens"] == 0


def test_grpc_unary_and_streamed_calls_are_counted(team: Shared) -> None:
    team.add("gail")
    with closing(sdk(team, "gail")) as client:
        plain = client.chat.create(model="grok-4", messages=[user("hi")]).sample().usage
        chunks = list(client.chat.create(model="grok-4", messages=[user("hi")]).stream())
        streamed = chunks[-1][0].usage  # the response the SDK built from every chunk
    assert streamed.completion_tokens > 0  # the stream's last chunk carried its usage
    row = usage_rows(team, "gail")["grok-4"]
    assert row["requests"] == 2
    assert row["prompt_tokens"] == plain.prompt_tokens + streamed.prompt_tokens
    assert row["completion_tokens"] == plain.completion_tokens + streamed.completion_tokens
    # What xAI reported for each call (1 USD = 1e10 ticks), not a price-table estimate.
    assert plain.cost_in_usd_ticks > 0 and streamed.cost_in_usd_ticks > 0
    assert row["cost_usd"] == pytest.approx(
        (plain.cost_in_usd_ticks + streamed.cost_in_usd_ticks) / 1e10, abs=1e-9
    )


# limits
def test_request_limit_on_websockets_is_enforced_before_upstream(
    team: Shared, sim: Simulator
) -> None:
    for attempt in range(2):  # a minute boundary inside the burst resets the window: again
        member = f"rita{attempt}"
        team.add(member, rpm=2)
        minute = int(time.time() // 60)
        handshakes = counted(sim, "ws_handshakes")
        with ws(team, member, "responses") as conn:  # request 1: the session
            send(conn, type="response.create", model="grok-4", input="Hi")  # request 2
            events_until(conn, "response.completed")
            send(conn, type="response.create", model="grok-4", input="More", event_id="ev_3")
            refused = event(conn)
            received = open_session_received(sim, "/v1/responses")
            # The session goes on after a refusal.
            assert conn.protocol.state.name == "OPEN"
        status, headers, error = ws_refusal(team, member, "responses")
        if int(time.time() // 60) == minute:
            break
    assert refused["type"] == "error"
    assert refused["status"] == 429
    assert refused["error"]["code"] == "rate_limit_exceeded"
    assert refused["error"]["event_id"] == "ev_3"
    assert "2 requests per minute" in refused["error"]["message"]
    assert "Retry after" in refused["error"]["message"]
    assert received == 1, "the refused response.create reached upstream"
    assert status == 429
    assert error["code"] == "rate_limit_exceeded"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert counted(sim, "ws_handshakes") == handshakes + 1


def test_request_limit_on_grpc_is_enforced_before_upstream(team: Shared, sim: Simulator) -> None:
    for attempt in range(2):
        member = f"greg{attempt}"
        team.add(member, rpm=2)
        minute = int(time.time() // 60)
        before = counted(sim, "grpc_requests")
        with closing(sdk(team, member)) as client:
            for _ in range(2):
                client.chat.create(model="grok-4", messages=[user("hi")]).sample()
            refused = grpc_error(
                lambda: client.chat.create(model="grok-4", messages=[user("hi")]).sample()
            )
        if int(time.time() // 60) == minute:
            break
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = refused.details() or ""
    assert "2 requests per minute" in details
    assert "Retry after" in details
    assert counted(sim, "grpc_requests") == before + 2


def test_budgets_on_grpc_and_websockets_are_enforced_before_upstream(
    team: Shared, sim: Simulator
) -> None:
    # One token a day: the first call spends it, the next is refused before upstream.
    team.add("bea", tokens_per_day=1)
    with closing(sdk(team, "bea")) as client:
        client.chat.create(model="grok-4", messages=[user("hi")]).sample()
        before = counted(sim, "grpc_requests")
        refused = grpc_error(
            lambda: client.chat.create(model="grok-4", messages=[user("hi")]).sample()
        )
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "budget of 1 tokens per day" in (refused.details() or "")
    assert counted(sim, "grpc_requests") == before
    # Her WebSocket session is refused at the handshake: the budget is the member's.
    handshakes = counted(sim, "ws_handshakes")
    status, headers, error = ws_refusal(team, "bea", "responses")
    assert (status, error["code"]) == (429, "budget_exceeded")
    assert int(headers["retry-after"]) > 0
    assert counted(sim, "ws_handshakes") == handshakes
    # A turn inside an open session spends a budget too, and the next turn is refused.
    team.add("bo", tokens_per_day=1)
    with ws(team, "bo", "responses") as conn:
        send(conn, type="response.create", model="grok-4", input="Hi")
        events_until(conn, "response.completed")
        send(conn, type="response.create", model="grok-4", input="More", event_id="ev_2")
        turn = event(conn)
        received = open_session_received(sim, "/v1/responses")
    assert turn["type"] == "error"
    assert (turn["status"], turn["error"]["code"]) == (429, "budget_exceeded")
    assert received == 1, "the refused response.create reached upstream"


def test_a_browser_session_on_a_minted_token_is_the_minting_member_s(
    team: Shared, sim: Simulator
) -> None:
    team.add("sia", tokens_per_day=1)
    minted = team.call("sia", "POST", "/realtime/client_secrets", json={})
    assert minted.status_code == 200, minted.text
    token = minted.json()["value"]
    url = f"ws{team.proxy.api.removeprefix('http')}/responses"
    # A browser has no Authorization header: the token rides in the subprotocol.
    offered = [Subprotocol(f"xai-client-secret.{token}")]
    with connect(url, subprotocols=offered, open_timeout=TIMEOUT) as conn:
        send(conn, type="response.create", model="grok-4", input="Hi")
        completed = events_until(conn, "response.completed")[-1]
    usage = completed["response"]["usage"]
    rows = usage_rows(team, "sia")
    # The mint, the session and its turn are all Sia's.
    assert sum(row["requests"] for row in rows.values()) == 3
    assert rows["grok-4"]["completion_tokens"] == usage["output_tokens"]
    # Her budget is spent, so her token opens no more sessions: refused before upstream.
    handshakes = counted(sim, "ws_handshakes")
    with pytest.raises(InvalidStatus) as refused:
        connect(url, subprotocols=offered, open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 429
    assert counted(sim, "ws_handshakes") == handshakes
    # The token is a credential: the database holds only its hash.
    stored = asyncio.run(database_text(team.settings))
    assert hashlib.sha256(token.encode()).hexdigest() in stored
    assert token not in stored


def test_allowed_models_and_routes_hold_on_websockets_and_grpc(
    team: Shared, sim: Simulator
) -> None:
    team.add("mona", models=["grok-3*"])
    team.add("rory", routes=["chat/completions"])
    before = counted(sim, "requests")
    with closing(sdk(team, "mona")) as client:
        wrong = grpc_error(
            lambda: client.chat.create(model="grok-4", messages=[user("hi")]).sample()
        )
    assert wrong.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not use model grok-4" in (wrong.details() or "")
    status, _, error = ws_refusal(team, "mona", "realtime?model=grok-voice-latest")
    assert (status, error["code"]) == (403, "model_not_allowed")
    status, _, error = ws_refusal(team, "rory", "tts?voice=eve")
    assert (status, error["code"]) == (403, "route_not_allowed")
    with grpc.insecure_channel(team.proxy.grpc_target) as channel:
        embed = grpc_error(
            lambda: embed_pb2_grpc.EmbedderStub(channel).Embed(
                embed_pb2.EmbedRequest(model="v1", input=[embed_pb2.EmbedInput(string="hi")]),
                metadata=metadata(team, "rory"),
                timeout=TIMEOUT,
            )
        )
    assert embed.code() == grpc.StatusCode.PERMISSION_DENIED
    assert counted(sim, "requests") == before, "a refused call reached upstream"

    # Responses mode names the model per turn: that turn is refused, the session goes on.
    with ws(team, "mona", "responses") as conn:
        send(conn, type="response.create", model="grok-4", input="Hi")
        refused = event(conn)
        send(conn, type="response.create", model="grok-3-mini", input="Hi")
        completed = events_until(conn, "response.completed")[-1]
        assert open_session_received(sim, "/v1/responses") == 1
    assert (refused["status"], refused["error"]["code"]) == (403, "model_not_allowed")
    assert completed["response"]["model"] == "grok-3-mini"
    with closing(sdk(team, "rory")) as client:
        assert client.chat.create(model="grok-4", messages=[user("hi")]).sample().content


# ownership
def test_websocket_responses_belong_to_their_creator(team: Shared, sim: Simulator) -> None:
    with ws(team, "alice", "responses") as conn:
        send(conn, type="response.create", model="grok-4", input="Hi")
        response_id = events_until(conn, "response.completed")[-1]["response"]["id"]
    assert team.call("bob", "GET", f"/responses/{response_id}").status_code == 404
    assert team.call("alice", "GET", f"/responses/{response_id}").status_code == 200
    with ws(team, "bob", "responses") as conn:
        send(conn, type="response.create", input="go on", previous_response_id=response_id)
        refused = event(conn)
        assert open_session_received(sim, "/v1/responses") == 0
    assert (refused["status"], refused["error"]["code"]) == (404, "not_found")
    with ws(team, "alice", "responses") as conn:
        send(conn, type="response.create", input="go on", previous_response_id=response_id)
        answer = events_until(conn, "response.completed")[-1]["response"]
    assert answer["previous_response_id"] == response_id


def test_grpc_stored_completions_belong_to_their_creator(team: Shared, sim: Simulator) -> None:
    made = team.call("alice", "POST", "/responses", json={"model": "grok-4", "input": "hi"})
    alices = made.json()["id"]
    before = counted(sim, "requests")
    with grpc.insecure_channel(team.proxy.grpc_target) as channel:
        chat = chat_pb2_grpc.ChatStub(channel)
        stored = grpc_error(
            lambda: chat.GetStoredCompletion(
                chat_pb2.GetStoredCompletionRequest(response_id=alices),
                metadata=metadata(team, "bob"),
                timeout=TIMEOUT,
            )
        )
        continued = grpc_error(
            lambda: chat.GetCompletion(
                chat_pb2.GetCompletionsRequest(
                    model="grok-4",
                    previous_response_id=alices,
                    messages=[
                        chat_pb2.Message(
                            role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="go on")]
                        )
                    ],
                ),
                metadata=metadata(team, "bob"),
                timeout=TIMEOUT,
            )
        )
        # Files, batches, collections: not scoped over gRPC, so not relayed in shared mode.
        files = grpc_error(
            lambda: channel.unary_unary(
                "/xai_api.Files/ListFiles",
                request_serializer=files_pb2.ListFilesRequest.SerializeToString,
            )(files_pb2.ListFilesRequest(), metadata=metadata(team, "bob"), timeout=TIMEOUT)
        )
    assert stored.code() == continued.code() == grpc.StatusCode.NOT_FOUND
    assert files.code() == grpc.StatusCode.PERMISSION_DENIED
    assert counted(sim, "requests") == before, "a refused call reached upstream"

    # A completion stored through gRPC is its creator's, over HTTP too.
    with closing(sdk(team, "alice")) as client:
        kept = client.chat.create(model="grok-4", messages=[user("hi")], store_messages=True)
        kept_id = kept.sample().id
    before = counted(sim, "requests")
    assert team.call("bob", "GET", f"/responses/{kept_id}").status_code == 404
    assert counted(sim, "requests") == before
    team.call("alice", "GET", f"/responses/{kept_id}")  # the simulator's own answer
    assert counted(sim, "requests") == before + 1
