"""/admin: members and usage over HTTP, for the bearer of GROK_PROXY_ADMIN_TOKEN."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from grok_proxy.calls.auth import bearer_token
from grok_proxy.calls.errors import Flavor, error_envelope
from grok_proxy.teams.members import LIMIT_FIELDS, Limits, Member
from grok_proxy.teams.pricing import NANOS_PER_DOLLAR
from grok_proxy.teams.store import NameTaken, NoSuchMember
from grok_proxy.teams.team import Team

LIMIT_NAMES = (*LIMIT_FIELDS, "models", "routes")


def member_json(member: Member, keys: int | None = None) -> dict[str, Any]:
    """A member as the admin API and the CLI show it: never a key, only how many."""
    data: dict[str, Any] = {
        "id": member.id,
        "name": member.name,
        "disabled": member.disabled,
        "limits": member.limits.to_json(),
        "xai_key_env": member.xai_key_env,
        "source": "GROK_PROXY_API_KEYS" if member.from_settings else "database",
    }
    if keys is not None:
        data["keys"] = keys
    return data


def usage_json(
    rows: list[dict[str, Any]], names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Usage rows with the member's name and the cost in dollars.

    `names` names the members that have no database row (GROK_PROXY_API_KEYS).
    """
    shown = []
    for row in rows:
        item = {k: v for k, v in row.items() if k != "cost_nanos"}
        item["member"] = row.get("name") or (names or {}).get(row["member_id"], row["member_id"])
        item.pop("name", None)
        item["cost_usd"] = round(row["cost_nanos"] / NANOS_PER_DOLLAR, 6)
        shown.append(item)
    return shown


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _error(status: int, message: str, code: str) -> Response:
    return _json(error_envelope(Flavor.OPENAI, status, message, code=code), status)


# Bounds of a limit: a count is a whole number an int64 column holds, dollars are finite
# and small enough that their nano-dollars do too; patterns are few and short.
MAX_COUNT = 10**15
MAX_DOLLARS = 10**9
MAX_PATTERNS = 1000
MAX_PATTERN_CHARS = 200


def limit_changes(data: dict[str, Any]) -> dict[str, Any]:
    """The limit fields of a request body, checked for type and range (ValueError when wrong)."""
    changes: dict[str, Any] = {}
    for name in LIMIT_NAMES:
        if name not in data:
            continue
        value = data[name]
        if name in {"models", "routes"}:
            value = _patterns(name, value)
        elif value is not None:
            value = _amount(name, value)
        changes[name] = value
    return changes


def _patterns(name: str, value: Any) -> list[str] | None:
    if isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if value is None:
        return None
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"{name} must be a list of strings")
    if len(value) > MAX_PATTERNS or any(len(v) > MAX_PATTERN_CHARS for v in value):
        raise ValueError(
            f"{name} takes at most {MAX_PATTERNS} patterns of at most {MAX_PATTERN_CHARS} "
            "characters each"
        )
    return value


def _amount(name: str, value: Any) -> int | float:
    if name.startswith("dollars_"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number of dollars, or null")
        if not 0 <= value <= MAX_DOLLARS:  # NaN fails this too
            raise ValueError(f"{name} must be between 0 and {MAX_DOLLARS} dollars, or null")
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, or null")
    if not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{name} must be between 0 and {MAX_COUNT}, or null")
    return value


def admin_app(team: Team) -> ASGIApp:
    """The /admin routes, bound to this worker's team."""
    api = AdminApi(team)
    return AdminRouter(
        routes=[
            Route("/admin/members", api.list_members, methods=["GET"]),
            Route("/admin/members", api.add_member, methods=["POST"]),
            Route("/admin/members/{name}", api.one_member, methods=["GET", "PATCH", "DELETE"]),
            Route("/admin/members/{name}/rotate-key", api.rotate_key, methods=["POST"]),
            Route("/admin/members/{name}/revoke-keys", api.revoke_keys, methods=["POST"]),
            Route("/admin/usage", api.usage, methods=["GET"]),
        ]
    )


class AdminRouter(Router):
    """The admin routes; an unknown path (404) or method (405) answers in the envelope.

    Starlette's router raises HTTPException for those when it runs inside an app (an
    "app" in the scope; it is set here, as the serving layer has none), and nothing
    between the team gate and the server would turn it into an answer.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__({**scope, "app": self}, receive, send)
        except HTTPException as exc:
            if exc.status_code == 405:
                message = f"Method {scope['method']} is not allowed on {scope['path']}."
            else:
                message = f"No such admin route: {scope['path']}."
            code = "method_not_allowed" if exc.status_code == 405 else "not_found"
            answer = _error(exc.status_code, message, code)
            answer.headers.update(exc.headers or {})
            await answer(scope, receive, send)


class AdminApi:
    """The handlers of /admin."""

    def __init__(self, team: Team) -> None:
        self.team = team
        self.token = team.settings.teams.admin_token

    def authorized(self, request: Request) -> Response | None:
        if self.token is None:
            return _error(
                403, "The admin API is off: set GROK_PROXY_ADMIN_TOKEN to use it.", "admin_off"
            )
        presented = bearer_token(request.headers.get("authorization", "")) or ""
        if not hmac.compare_digest(presented.encode(), self.token.get_secret_value().encode()):
            return _error(401, "The admin token is missing or wrong.", "invalid_admin_token")
        return None

    @staticmethod
    async def body_of(request: Request) -> dict[str, Any]:
        try:
            data = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise ValueError("the body must be a JSON object")
        return data

    async def list_members(self, request: Request) -> Response:
        if refused := self.authorized(request):
            return refused
        members = await self.team.members()
        return _json({"object": "list", "data": [member_json(m, k) for m, k in members]})

    async def add_member(self, request: Request) -> Response:
        if refused := self.authorized(request):
            return refused
        try:
            data = await self.body_of(request)
            name = data.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ValueError("name must be a non-empty string")
            limits = Limits().updated(limit_changes(data))
            env = data.get("xai_key_env")
            member, key = await self.team.store.add_member(
                name.strip(), limits, env if isinstance(env, str) and env else None
            )
        except NameTaken:  # a ValueError too: caught first
            return _error(409, f"A member named {name} exists already.", "member_exists")
        except ValueError as exc:
            return _error(422, str(exc), "invalid_value")
        await self.team.reload()
        # The only answer that ever carries the key: it is not stored anywhere in clear.
        return _json({"member": member_json(member, 1), "key": key}, 201)

    async def one_member(self, request: Request) -> Response:
        if refused := self.authorized(request):
            return refused
        name = request.path_params["name"]
        try:
            if request.method == "PATCH":
                data = await self.body_of(request)
                member = await self.team.store.member(name)
                changes = limit_changes(data)
                if changes:
                    member = await self.team.store.set_limits(name, changes)
                if isinstance(data.get("disabled"), bool):
                    member = await self.team.store.set_disabled(name, data["disabled"])
                await self.team.reload()
            elif request.method == "DELETE":
                await self.team.store.delete_member(name)
                await self.team.reload()
                return _json({"name": name, "deleted": True})
            else:
                member = await self.team.store.member(name)
        except ValueError as exc:
            return _error(422, str(exc), "invalid_value")
        except NoSuchMember:
            return _error(404, f"No member named {name}.", "no_such_member")
        return _json(member_json(member))

    async def revoke_keys(self, request: Request) -> Response:
        if refused := self.authorized(request):
            return refused
        name = request.path_params["name"]
        try:
            revoked = await self.team.store.revoke_keys(name)
        except NoSuchMember:
            return _error(404, f"No member named {name}.", "no_such_member")
        await self.team.reload()
        return _json({"name": name, "revoked": revoked})

    async def rotate_key(self, request: Request) -> Response:
        if refused := self.authorized(request):
            return refused
        name = request.path_params["name"]
        try:
            data = await self.body_of(request)
            key = await self.team.store.rotate_key(name, keep_old=bool(data.get("keep_old")))
        except ValueError as exc:
            return _error(422, str(exc), "invalid_value")
        except NoSuchMember:
            return _error(404, f"No member named {name}.", "no_such_member")
        await self.team.reload()
        return _json({"name": name, "key": key}, 201)

    async def usage(self, request: Request) -> Response:
        if refused := self.authorized(request):
            return refused
        await self.team.flush()
        query = request.query_params
        member_id = None
        if query.get("member"):
            try:
                member_id = (await self.team.store.member(query["member"])).id
            except NoSuchMember:
                return _error(404, f"No member named {query['member']}.", "no_such_member")
        rows = await self.team.store.usage_report(query.get("since"), query.get("until"), member_id)
        return _json({"object": "list", "data": usage_json(rows, self.team.settings_names())})
