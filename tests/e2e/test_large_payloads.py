"""Issue 24, item 11: a large payload is handled off the event loop, and still checked as
strictly and relayed as exactly as a small one (the real proxy, the simulator, real clients).

A large body is parsed and read in a parser process; these tests prove the shared proxy's
member checks decide on it all the same (docs/reliability.md, "Large payloads").
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import httpx
import orjson

from grok_proxy.calls.bodies import LARGE_BODY_BYTES
from tests.e2e.test_hardening_round3 import encode, post, team
from tests.e2e.test_teams import Shared
from tests.processes import Simulator, proxy, settle

__all__ = ["team"]  # the shared proxy of test_hardening_round3, started for this module

# Enough to make any body large (the size, not the shape, decides where it is parsed).
PADDING = "x" * LARGE_BODY_BYTES


def padded(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "metadata_padding": PADDING}


def test_member_checks_hold_on_large_bodies(team: Shared, sim: Simulator) -> None:
    """The round-3 attacks, each body past the size parsed in a parser process."""
    made = team.call("alice", "POST", "/responses", json={"model": "grok-4", "input": "hi"})
    upload = team.call("alice", "POST", "/files", files={"file": ("a.txt", b"alice's notes")})
    alice_response, alice_file = made.json()["id"], upload.json()["id"]
    file_part = [{"type": "file", "file": {"file_id": alice_file}}]
    attacks = [  # (member, path, body, secret, status a refusal must have)
        (
            "bob",
            "/responses",
            {"model": "grok-4", "input": "hi", "previous_response_id": alice_response},
            alice_response,
            404,
        ),
        (
            "bob",
            "/chat/completions",
            {"model": "grok-4", "messages": [{"role": "user", "content": file_part}]},
            alice_file,
            404,
        ),
        ("bob", "/batches", {"name": "b", "input_file_id": alice_file}, alice_file, 404),
        (
            "carol",
            "/chat/completions",
            {"model": "grok-3-mini", "messages": [{"role": "user", "content": "hi"}]},
            "grok-3-mini",
            403,
        ),
    ]
    before = sim.stats()["requests"]
    leaks = []
    for (member, path, body, secret, status), style in itertools.product(
        attacks, ("plain", "escaped keys", "duplicate keys")
    ):
        sent = encode(padded(body), style, secret)
        assert len(sent) > LARGE_BODY_BYTES
        answer = post(team, member, path, sent, "text/plain")
        if answer.status_code != status:
            leaks.append((member, path, style, answer.status_code))
    assert leaks == []
    assert sim.stats()["requests"] == before  # not one went upstream


def test_a_large_batch_holds_each_request_to_the_member_s_models(
    team: Shared, sim: Simulator
) -> None:
    """10,000 batch requests, one of them naming a model the member may not use."""
    batch = team.call("carol", "POST", "/batches", json={"name": "c"}).json()["batch_id"]

    def item(model: str) -> dict[str, Any]:
        chat = {"model": model, "messages": [{"role": "user", "content": "hi" * 200}]}
        return {"batch_request_id": "r", "batch_request": {"chat_get_completion": chat}}

    items = [item("grok-4")] * 10_000
    body = orjson.dumps({"batch_requests": [*items[:5000], item("grok-3-mini"), *items[5000:]]})
    assert len(body) > LARGE_BODY_BYTES
    before = sim.stats()["requests"]
    answer = post(team, "carol", f"/batches/{batch}/requests", body, None)
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "model_not_allowed"
    assert sim.stats()["requests"] == before


def test_an_allowed_large_body_reaches_xai_exactly_as_sent(team: Shared, sim: Simulator) -> None:
    body = b' {"model": "grok-4" , "messages": [{"role": "user", "content": "hi"}],'
    body += b'"metadata_padding": ' + orjson.dumps(PADDING) + b"} "
    answer = post(team, "carol", "/chat/completions", body, "application/x-www-form-urlencoded")
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "chat.completion"
    assert sim.last_request()["body"] == body.decode()


def children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as listed:
            found.update(int(child) for child in listed.read().split())
    return found


def test_the_parser_process_ends_with_its_worker(sim: Simulator) -> None:
    """uvicorn ends with the SIGTERM it received, so the worker cannot stop its parser:
    the parser notices and exits rather than wait for work forever (90 MB each)."""
    body = orjson.dumps(padded({"model": "grok-4", "messages": []}))
    with proxy(sim.base_url) as running:
        before = children_of(running.process.pid)
        answer = httpx.post(
            f"{running.api}/chat/completions",
            content=body,
            headers={"authorization": "Bearer xai-caller-key"},
            timeout=60,
        )
        assert answer.status_code == 200
        started = children_of(running.process.pid) - before
        assert started  # the parser (and multiprocessing's resource tracker)
    alive = settle(lambda: sum(os.path.exists(f"/proc/{pid}") for pid in started), 0, 10)
    assert alive == 0
