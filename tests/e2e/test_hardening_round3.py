"""Issue 24's attacks on a shared proxy, replayed against the real proxy process.

Every check must decide on the value xAI will act on: a body whatever its Content-Type or
escapes, a WebSocket turn whatever its frame or escapes, a WebSocket head whatever its
shape. The simulator's request counter says what reached "xAI": a refused attack leaves it
unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.test_teams import Shared, cli, key_in, team_settings
from tests.processes import Simulator, proxy

# Keys whose value a member's checks decide on.
GUARDED_KEYS = ("model", "previous_response_id", "file_id", "input_file_id")
CONTENT_TYPES = (
    None,
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",  # curl -d
    "multipart/form-data; boundary=x",
    "application/octet-stream",
    "text/html",
)


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(char):04x}" for char in text)


def encode(body: dict[str, Any], style: str, secret: str) -> bytes:
    """The body as JSON text, its guarded keys or the secret value written another way."""
    text = orjson.dumps(body).decode()
    for key in GUARDED_KEYS:
        if style == "escaped keys":
            text = text.replace(f'"{key}":', f'"{escaped(key)}":')
        elif style == "duplicate keys":  # a harmless value first, the attack last
            text = text.replace(f'"{key}":', f'"{key}":null,"{key}":')
    if style == "escaped value":
        text = text.replace(f'"{secret}"', f'"{escaped(secret[:3])}{secret[3:]}"')
    return text.encode()


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, sim: Simulator) -> Iterator[Shared]:
    """A shared proxy (SQLite): alice, bob, and carol who may use grok-4 only."""
    settings = team_settings({"grok_proxy_data_dir": str(tmp_path_factory.mktemp("round3"))})
    alice = key_in(cli(settings, "members", "add", "alice"))
    with proxy(sim.base_url, workers=1, **settings) as running:
        shared = Shared(settings, running, {"alice": alice})
        shared.add("bob")
        shared.add("carol", models=["grok-4"])
        yield shared


def post(team: Shared, member: str, path: str, body: bytes, content_type: str | None) -> Any:
    headers = {"authorization": f"Bearer {team.keys[member]}"}
    if content_type is not None:
        headers["content-type"] = content_type
    return httpx.post(f"{team.proxy.api}{path}", content=body, headers=headers, timeout=15)


def test_member_checks_see_the_parsed_body_whatever_its_label_or_escapes(
    team: Shared, sim: Simulator
) -> None:
    """Item 1: 5 attacks x 4 encodings x 8 content types, none of which reaches xAI."""
    made = team.call("alice", "POST", "/responses", json={"model": "grok-4", "input": "hi"})
    upload = team.call("alice", "POST", "/files", files={"file": ("a.txt", b"alice's notes")})
    alice_response, alice_file = made.json()["id"], upload.json()["id"]
    chat_with_file = {
        "model": "grok-4",
        "messages": [
            {"role": "user", "content": [{"type": "file", "file": {"file_id": alice_file}}]}
        ],
    }
    attacks = [  # (member, path, body, secret, status a refusal must have)
        (
            "bob",
            "/responses",
            {"model": "grok-4", "input": "hi", "previous_response_id": alice_response},
            alice_response,
            404,
        ),
        ("bob", "/chat/completions", chat_with_file, alice_file, 404),
        ("bob", "/batches", {"name": "b", "input_file_id": alice_file}, alice_file, 404),
        (
            "carol",
            "/chat/completions",
            {"model": "grok-3-mini", "messages": [{"role": "user", "content": "hi"}]},
            "grok-3-mini",
            403,
        ),
        ("carol", "/responses", {"model": "grok-3-mini", "input": "hi"}, "grok-3-mini", 403),
    ]
    styles = ("plain", "escaped keys", "escaped value", "duplicate keys")
    leaks = []
    before = sim.stats()["requests"]
    for (member, path, body, secret, status), style, content_type in itertools.product(
        attacks, styles, CONTENT_TYPES
    ):
        answer = post(team, member, path, encode(body, style, secret), content_type)
        if answer.status_code != status:
            leaks.append((member, path, style, content_type, answer.status_code))
    assert leaks == []
    assert sim.stats()["requests"] == before  # not one of the 160 went upstream

    # The same labels on an allowed request still work: the proxy reads any body as JSON.
    allowed = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
    answer = post(team, "carol", "/chat/completions", orjson.dumps(allowed), "text/plain")
    assert answer.status_code == 200, answer.text


MODEL_ROUTES = (
    "/chat/completions",
    "/completions",
    "/responses",
    "/messages",
    "/messages/count_tokens",
    "/embeddings",
    "/tokenize-text",
    "/images/generations",
    "/images/generate",
    "/images/edits",
    "/vision/analyze",
    "/videos/generations",
    "/videos/edits",
    "/videos/extensions",
)


def test_model_allow_lists_hold_on_every_model_taking_route(team: Shared, sim: Simulator) -> None:
    """Item 1: a member limited to grok-4 names another model, the key escaped, as text."""
    before = sim.stats()["requests"]
    body = f'{{"{escaped("model")}": "grok-3-mini", "prompt": "a cat", "input": "hi"}}'
    answers = {
        path: post(team, "carol", path, body.encode(), "text/plain").status_code
        for path in MODEL_ROUTES
    }
    assert answers == dict.fromkeys(MODEL_ROUTES, 403)
    assert sim.stats()["requests"] == before


def test_a_body_the_gate_cannot_parse_is_refused_not_forwarded(
    team: Shared, sim: Simulator
) -> None:
    """Item 1: what is not JSON is refused with 400 in the envelope, on validated routes and
    on routes forwarded as sent alike."""
    before = sim.stats()["requests"]
    for path, body in (
        ("/chat/completions", b"model=grok-3-mini&messages=hi"),
        ("/batches", b"input_file_id=file_1"),
        ("/responses", b'{"model": "grok-4", "input": "hi", "temperature": NaN}'),
    ):
        answer = post(team, "carol", path, body, "application/x-www-form-urlencoded")
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "invalid_json"
        assert error["message"].startswith("Request body is not valid JSON")
    assert sim.stats()["requests"] == before
