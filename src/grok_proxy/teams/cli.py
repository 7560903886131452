"""`grok-proxy members ...` and `grok-proxy usage`: the team's database from a shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

from grok_proxy.config import Settings
from grok_proxy.teams.admin import limit_changes, member_json, usage_json
from grok_proxy.teams.members import Limits, settings_member
from grok_proxy.teams.store import NameTaken, NoSuchMember, Store
from grok_proxy.teams.team import build_store


def _limit_flags(parser: argparse.ArgumentParser) -> None:
    for name in ("rpm", "tpm", "tokens-per-day", "tokens-per-month"):
        parser.add_argument(f"--{name}", metavar="N", help="a number; `none` removes the limit")
    for name in ("dollars-per-day", "dollars-per-month"):
        parser.add_argument(f"--{name}", metavar="USD", help="dollars; `none` removes the limit")
    parser.add_argument("--models", help="allowed models, comma-separated (`*` patterns work)")
    parser.add_argument("--routes", help="allowed routes below /api/v1, comma-separated")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grok-proxy", description="Members of a shared proxy.")
    commands = parser.add_subparsers(dest="command", required=True)
    members = commands.add_parser("members", help="manage members").add_subparsers(
        dest="action", required=True
    )
    add = members.add_parser("add", help="add a member; its key is shown once")
    add.add_argument("name")
    add.add_argument("--xai-key-env", help="environment variable with the member's own xAI key")
    _limit_flags(add)
    listing = members.add_parser("list", help="list members (never their keys)")
    listing.add_argument("--json", action="store_true", help="one JSON document")
    for action, text in (
        ("disable", "its keys stop working"),
        ("enable", "undo disable"),
        ("revoke-keys", "every key stops working; none replaces them"),
        ("delete", "remove the member and its keys (its usage stays in the totals)"),
    ):
        members.add_parser(action, help=text).add_argument("name")
    rotate = members.add_parser("rotate-key", help="a new key; the old ones stop working")
    rotate.add_argument("name")
    rotate.add_argument("--keep-old", action="store_true", help="keep the old keys working")
    limit = members.add_parser("set-limit", help="change limits")
    limit.add_argument("name")
    _limit_flags(limit)
    usage = commands.add_parser("usage", help="usage and cost per member, model and day")
    usage.add_argument("--member", help="only this member")
    usage.add_argument("--since", help="first day, YYYY-MM-DD")
    usage.add_argument("--until", help="last day, YYYY-MM-DD")
    usage.add_argument("--json", action="store_true", help="one JSON document")
    return parser


def _flag_changes(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for name in ("rpm", "tpm", "tokens_per_day", "tokens_per_month"):
        value = getattr(args, name)
        if value is not None:
            raw[name] = None if value == "none" else int(value)
    for name in ("dollars_per_day", "dollars_per_month"):
        value = getattr(args, name)
        if value is not None:
            raw[name] = None if value == "none" else float(value)
    for name in ("models", "routes"):
        value = getattr(args, name)
        if value is not None:
            raw[name] = None if value == "none" else value
    return limit_changes(raw)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def main(argv: list[str]) -> None:
    """Run one members/usage command against the configured team database."""
    args = _parser().parse_args(argv)
    settings = Settings()
    creates = args.command == "members" and args.action == "add"
    database = Path(settings.teams.data_dir) / "teams.db"
    if not settings.teams.database_url and not creates and not database.exists():
        # Looking must not create a database: that would turn the proxy into a shared one.
        _out(f"No team database yet ({database}); `grok-proxy members add NAME` creates it.")
        if args.command == "members" and args.action not in {"list"}:
            sys.exit(1)
        return
    try:
        asyncio.run(_run(build_store(settings), args))
    except (NoSuchMember, NameTaken, ValueError) as exc:
        kind = {NoSuchMember: "no member named", NameTaken: "a member exists named"}
        sys.stderr.write(f"grok-proxy: {kind.get(type(exc), 'error:')} {exc}\n")
        sys.exit(1)


async def _run(store: Store, args: argparse.Namespace) -> None:
    try:
        await store.migrate()
        handler: Callable[[Store, argparse.Namespace], Awaitable[None]] = (
            _usage if args.command == "usage" else ACTIONS[args.action]
        )
        await handler(store, args)
    finally:
        await store.aclose()


async def _add(store: Store, args: argparse.Namespace) -> None:
    limits = Limits().updated(_flag_changes(args))
    member, key = await store.add_member(args.name, limits, args.xai_key_env)
    _out(f"Added member {member.name} ({member.id}). Its access key, shown only this once:")
    _out(key)


async def _list(store: Store, args: argparse.Namespace) -> None:
    members = [member_json(member, keys) for member, keys in await store.list_members()]
    if args.json:
        _out(orjson.dumps(members).decode())
        return
    for item in members:
        state = "disabled" if item["disabled"] else "active"
        limits = ", ".join(f"{k}={v}" for k, v in item["limits"].items()) or "no limits"
        _out(f"{item['name']}\t{state}\t{item['keys']} key(s)\t{limits}")


async def _disable(store: Store, args: argparse.Namespace) -> None:
    await store.set_disabled(args.name, True)
    _out(f"Member {args.name} is disabled; its keys stop working within seconds.")


async def _enable(store: Store, args: argparse.Namespace) -> None:
    await store.set_disabled(args.name, False)
    _out(f"Member {args.name} is enabled.")


async def _revoke(store: Store, args: argparse.Namespace) -> None:
    revoked = await store.revoke_keys(args.name)
    _out(f"{revoked} key(s) of {args.name} revoked; `rotate-key` gives it a new one.")


async def _delete(store: Store, args: argparse.Namespace) -> None:
    await store.delete_member(args.name)
    _out(f"Member {args.name} is deleted; its keys stop working within seconds.")


async def _rotate(store: Store, args: argparse.Namespace) -> None:
    key = await store.rotate_key(args.name, keep_old=args.keep_old)
    _out(f"New access key for {args.name}, shown only this once:")
    _out(key)


async def _set_limit(store: Store, args: argparse.Namespace) -> None:
    member = await store.set_limits(args.name, _flag_changes(args))
    _out(f"Limits of {member.name}: {orjson.dumps(member.limits.to_json()).decode()}")


async def _usage(store: Store, args: argparse.Namespace) -> None:
    member_id = (await store.member(args.member)).id if args.member else None
    names = {m.id: m.name for m in map(settings_member, Settings().access.api_keys)}
    rows = usage_json(await store.usage_report(args.since, args.until, member_id), names)
    if args.json:
        _out(orjson.dumps(rows).decode())
        return
    _out("day\tmember\tmodel\trequests\tprompt\tcompletion\treasoning\tcached\tcost_usd")
    for row in rows:
        _out(
            "\t".join(
                str(row[name])
                for name in (
                    "day",
                    "member",
                    "model",
                    "requests",
                    "prompt_tokens",
                    "completion_tokens",
                    "reasoning_tokens",
                    "cached_tokens",
                    "cost_usd",
                )
            )
        )


ACTIONS: dict[str, Callable[[Store, argparse.Namespace], Awaitable[None]]] = {
    "add": _add,
    "list": _list,
    "disable": _disable,
    "enable": _enable,
    "rotate-key": _rotate,
    "revoke-keys": _revoke,
    "delete": _delete,
    "set-limit": _set_limit,
}
