"""The pieces of a shared proxy that need no process: path scopes, prices, limits, keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from grok_proxy.config import parse_prices
from grok_proxy.teams.members import KEY_PREFIX, Limits, hash_key, new_access_key
from grok_proxy.teams.pricing import Price, Prices, from_language_models, overrides
from grok_proxy.teams.scope import Action, Decision, classify, references
from grok_proxy.teams.store import HEAD_REVISION, MIGRATIONS, Store, engine_url, windows


@pytest.mark.parametrize(
    ("method", "route", "decision"),
    [
        ("POST", "chat/completions", Decision(Action.CREATE, "deferred")),
        ("POST", "responses", Decision(Action.CREATE, "response")),
        ("GET", "responses/resp_1", Decision(Action.OBJECT, "response", "resp_1")),
        ("DELETE", "responses/resp_1", Decision(Action.OBJECT, "response", "resp_1")),
        ("POST", "files", Decision(Action.CREATE, "file")),
        ("GET", "files", Decision(Action.LIST, "file")),
        ("GET", "files/file-1/content", Decision(Action.OBJECT, "file", "file-1")),
        ("GET", "batches", Decision(Action.LIST, "batch")),
        ("POST", "batches/b1:cancel", Decision(Action.OBJECT, "batch", "b1")),
        ("GET", "batches/b1/results", Decision(Action.OBJECT, "batch", "b1")),
        ("GET", "chat/deferred-completion/d1", Decision(Action.OBJECT, "deferred", "d1")),
        ("POST", "videos/generations", Decision(Action.CREATE, "video")),
        ("GET", "videos/v1", Decision(Action.OBJECT, "video", "v1")),
        ("GET", "images/i1", Decision(Action.OBJECT, "image", "i1")),
        ("GET", "api-key", Decision(Action.API_KEY)),
        ("GET", "health", Decision(Action.OPEN)),
        ("GET", "models/grok-4", Decision(Action.STATELESS)),
        ("GET", "language-models", Decision(Action.STATELESS)),
        ("POST", "messages", Decision(Action.STATELESS)),
        ("POST", "documents/search", Decision(Action.REFUSE)),
        ("GET", "files/file-1/other", Decision(Action.REFUSE)),
        ("GET", "responses/../files", Decision(Action.REFUSE)),
        ("GET", "something-new", Decision(Action.REFUSE)),
    ],
)
def test_every_path_has_a_scope(method: str, route: str, decision: Decision) -> None:
    assert classify(method, route) == decision


def test_references_are_found_at_any_depth() -> None:
    body = {
        "previous_response_id": "resp_1",
        "input": [{"content": [{"type": "input_file", "file_id": "file-1"}]}],
        "input_file_id": "file-2",
    }
    assert sorted(references(body)) == [
        ("file", "file-1"),
        ("file", "file-2"),
        ("response", "resp_1"),
    ]


def test_prices_from_xai_units_and_overrides() -> None:
    published = from_language_models(
        {
            "models": [
                {
                    "id": "grok-3",
                    "aliases": ["grok-3-latest"],
                    "prompt_text_token_price": 30000,
                    "cached_prompt_text_token_price": 7500,
                    "completion_text_token_price": 150000,
                }
            ]
        }
    )
    # 30000 cents per 100M tokens is $3 per million, 3000 nano-dollars per token.
    assert published["grok-3-latest"] == Price(3000, 750, 15000)
    prices = Prices(overrides(parse_prices("grok-4=2/0.5/10, fast=1/4")))
    prices.published = published
    usage = {"prompt": 1000, "cached": 400, "completion": 100, "reasoning": 50}
    # 600 uncached, 400 cached, 150 output (reasoning is billed as output).
    assert prices.cost("grok-4", usage) == 600 * 2000 + 400 * 500 + 150 * 10000
    assert prices.cost("grok-3", usage) == 600 * 3000 + 400 * 750 + 150 * 15000
    assert prices.cost("fast", {"prompt": 1, "completion": 1}) == 1000 + 4000
    assert prices.cost("unpriced", usage) == 0
    with pytest.raises(ValueError, match="model=in/cached/out"):
        parse_prices("grok-4=1")


def test_limits_round_trip_and_match() -> None:
    limits = Limits.from_json({"rpm": 5, "models": ["grok-4*"], "routes": ["/chat/completions"]})
    assert limits.to_json() == {"rpm": 5, "models": ["grok-4*"], "routes": ["chat/completions"]}
    assert limits.allows_model("grok-4-fast") and not limits.allows_model("grok-3")
    assert limits.allows_route("chat/completions") and not limits.allows_route("embeddings")
    assert limits.counted and not limits.metered
    assert limits.updated({"rpm": None, "tpm": 10}).to_json()["tpm"] == 10
    assert "rpm" not in limits.updated({"rpm": None}).to_json()


def test_access_keys_are_random_and_stored_as_hashes() -> None:
    first, second = new_access_key(), new_access_key()
    assert first.startswith(KEY_PREFIX) and first != second
    assert len(first) > 40
    assert hash_key(first) != first and len(hash_key(first)) == 64


def test_head_revision_is_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_database_urls_get_async_drivers() -> None:
    assert engine_url("postgresql://u@h/db", "") == "postgresql+asyncpg://u@h/db"
    assert engine_url("", "/data").startswith("sqlite+aiosqlite:////data/teams.db")
    minute, day, month = windows(__import__("datetime").datetime(2026, 1, 2, 3, 4, 5))
    assert (day, month) == ("d2026-01-02", "M2026-01")
    assert minute.startswith("m")


@pytest.mark.anyio
async def test_a_member_name_the_admin_api_could_not_address_is_refused(tmp_path: Path) -> None:
    store = Store(engine_url("", str(tmp_path)))
    await store.migrate()
    try:
        for name in ("team/alice", "", " alice", "bob\n", "x" * 65):
            with pytest.raises(ValueError, match="name must be"):
                await store.add_member(name, Limits())
        member, _ = await store.add_member("alice.smith-2", Limits())
        assert member.name == "alice.smith-2"
    finally:
        await store.aclose()
