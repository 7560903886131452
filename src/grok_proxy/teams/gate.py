"""The HTTP side of a shared proxy: a pure-ASGI middleware in front of the API routes.

Per request under /api/v1: the member behind the access key, the path's scope (scope.py),
ownership of the objects it names, the member's limits; then the route runs as usual, and
the gate claims the objects the answer creates, cuts lists to the member's objects and
counts the usage. Every refusal happens before anything goes upstream.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grok_proxy.auth import bearer_token
from grok_proxy.errors import Flavor, ProxyError, envelope_bytes
from grok_proxy.middleware import API_PREFIX
from grok_proxy.record import record_of
from grok_proxy.sse import EventTooLarge, SseParser
from grok_proxy.teams.activity import mark_member
from grok_proxy.teams.errors import DatabaseUnavailable, NotAllowed
from grok_proxy.teams.members import Member
from grok_proxy.teams.scope import CREATES, REFERENCE_MARKS, Action, Decision, references
from grok_proxy.teams.team import DB_ERRORS, Admission, Team

log = logging.getLogger("grok_proxy.teams")

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# How far into a stream the gate looks for the id of the object it creates.
STREAM_SCAN_BYTES = 64 * 1024


def presented_key(scope: Scope) -> str | None:
    """The key in `Authorization: Bearer` or, failing that, `x-api-key`."""
    bearer = x_api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            bearer = bearer_token(value.decode("latin-1"))
        elif name == b"x-api-key":
            x_api_key = value.decode("latin-1").strip() or None
    return bearer or x_api_key


async def send_json(
    send: Send, status: int, body: bytes, headers: dict[str, str] | None = None
) -> None:
    """A complete JSON response."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class TeamGate:
    """Admits members, scopes their objects, enforces limits and counts usage (HTTP)."""

    def __init__(self, app: ASGIApp, *, team: Team, admin: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.team = team
        self.admin = admin
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/admin" or path.startswith("/admin/"):
            await self.admin(scope, receive, send)
            return
        if not path.startswith(API_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        flavor = Flavor.ANTHROPIC if path.endswith("/messages") else Flavor.OPENAI
        # A member's failed answers, refusals included, are noted for the console.
        send = self.team.activity.watch(scope, send)
        try:
            await self._gated(scope, receive, send, path[len(API_PREFIX) + 1 :])
        except ProxyError as exc:
            await send_json(send, exc.status, envelope_bytes(flavor, exc), exc.headers)

    async def _gated(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        decision = self.team.scope_path(method, route)
        if decision.action is Action.OPEN:
            await self.app(scope, receive, send)
            return
        where = "an `Authorization: Bearer <key>` header"
        presented = presented_key(scope)
        member = self.team.admit(presented, where)
        mark_member(scope, member.id)
        record = record_of(scope)
        if decision.action is Action.REFUSE:
            raise NotAllowed(
                f"{scope['method']} /{route} is not available through this shared proxy: it is "
                "not known to keep each member's objects apart.",
                code="route_not_shared",
            )
        if decision.action is Action.API_KEY:
            assert presented is not None
            await send_json(send, 200, orjson.dumps(self.team.key_view(member, presented)))
            return
        body, receive = await self._body(scope, receive)
        model, claims_answer = await self._inspect(member, decision, body)
        if decision.action is Action.OBJECT:
            assert decision.kind is not None
            assert decision.object_id is not None
            await self.team.require_all(member, [(decision.kind, decision.object_id)])
        if model is not None and record.model is None:
            record.model = model  # before the check: a refusal's log line names it too
        admission = await self.team.check(member, route, model)
        watcher = AnswerWatcher(
            self.team,
            member,
            decision,
            scope=scope,
            send=send,
            claims_answer=claims_answer,
            admission=admission,
        )
        try:
            await self.app(scope, receive, watcher.send)
        finally:
            await watcher.finish()

    async def _body(self, scope: Scope, receive: Receive) -> tuple[bytes, Receive]:
        """The request body (up to the size limit) and a receive that replays it to the route."""
        if scope["method"] not in BODY_METHODS or not _is_json(scope):
            # Only JSON bodies name a model or objects the gate checks; uploads (multipart
            # files, images) stream through untouched, so memory stays flat for them.
            return b"", receive
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_body_bytes or not message.get("more_body", False):
                break
        complete = messages[-1]["type"] == "http.request" and not messages[-1].get("more_body")
        body = b"".join(m.get("body", b"") for m in messages) if complete else b""
        pending = list(messages)

        async def replay() -> Message:
            return pending.pop(0) if pending else await receive()

        return body, replay

    async def _inspect(
        self, member: Member, decision: Decision, body: bytes
    ) -> tuple[str | None, bool]:
        """The body's model, the objects it names (owned or 404), and whether the answer
        names a new object."""
        claims_answer = decision.action is Action.CREATE
        if decision.kind == "deferred":
            claims_answer = b'"deferred"' in body
        looks = bool(member.limits.models) or any(mark in body for mark in REFERENCE_MARKS)
        if not body or not (looks or claims_answer) or body[:1] not in b"{[ \t\r\n":
            return None, claims_answer
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None, claims_answer  # the route answers 400 with the reason
        if decision.kind == "deferred":
            claims_answer = isinstance(data, dict) and data.get("deferred") is True
        await self.team.require_all(member, references(data))
        model = data.get("model") if isinstance(data, dict) else None
        return (model if isinstance(model, str) else None), claims_answer


class AnswerWatcher:
    """Wraps `send`: claims created objects, filters lists, counts usage before the end."""

    def __init__(
        self,
        team: Team,
        member: Member,
        decision: Decision,
        *,
        scope: Scope,
        send: Send,
        claims_answer: bool,
        admission: Admission,
    ) -> None:
        self.team = team
        self.admission = admission
        self.member = member
        self.decision = decision
        self.scope = scope
        self.downstream = send
        self.claims_answer = claims_answer
        self.mode = ""  # "json": held until complete; "sse": scanned for the new id
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        # Reads the first events of a stream (as the relay does) until the new id shows.
        self.scan: SseParser | None = SseParser(STREAM_SCAN_BYTES)
        self.scanned = 0
        self.recorded = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._choose_mode(message)
            if self.mode == "json":
                self.start = message
                return
            await self.downstream(message)
            return
        if message["type"] != "http.response.body":
            await self.downstream(message)
            return
        more = message.get("more_body", False)
        if self.mode == "json":
            self.chunks.append(message.get("body", b""))
            if more:
                return
            await self._send_whole(b"".join(self.chunks))
            return
        if self.mode == "sse" and message.get("body"):
            await self._scan(message["body"])
        if not more:
            await self._record()
        await self.downstream(message)

    def _choose_mode(self, start: Message) -> None:
        if not 200 <= start["status"] < 300:
            return
        wanted = self.decision.action is Action.LIST or (
            self.decision.action is Action.CREATE and self.claims_answer
        )
        if not wanted:
            return
        content_type = b""
        for name, value in start.get("headers", []):
            if name.lower() == b"content-type":
                content_type = value
        if content_type.startswith(b"application/json"):
            self.mode = "json"
        elif (
            content_type.startswith(b"text/event-stream") and self.decision.action is Action.CREATE
        ):
            self.mode = "sse"

    async def _send_whole(self, content: bytes) -> None:
        assert self.start is not None
        try:
            data = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            if self.decision.action is Action.LIST:
                try:
                    content = orjson.dumps(await self._filtered(data))
                except DB_ERRORS:
                    # Without ownership records the list cannot be cut: show none of it.
                    error = DatabaseUnavailable(
                        "The team database is unreachable, so this list cannot be limited "
                        "to your objects; try again shortly."
                    )
                    await self._record()
                    await send_json(
                        self.downstream, error.status, envelope_bytes(Flavor.OPENAI, error)
                    )
                    return
            else:
                await self._claim(_ids(data, self.decision.kind))
        headers = [
            (name, value)
            for name, value in self.start.get("headers", [])
            if name.lower() != b"content-length"
        ]
        headers.append((b"content-length", str(len(content)).encode()))
        await self._record()
        await self.downstream({**self.start, "headers": headers})
        await self.downstream({"type": "http.response.body", "body": content})

    async def _filtered(self, data: dict[str, Any]) -> dict[str, Any]:
        """The list answer with only the member's objects in each list of objects."""
        assert self.decision.kind is not None
        for field, items in data.items():
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                continue
            ids = [_object_id(item) for item in items]
            owned = await self.team.owned_among(
                self.member, self.decision.kind, [i for i in ids if i]
            )
            data[field] = [item for item, i in zip(items, ids, strict=True) if i in owned]
        return data

    async def _scan(self, chunk: bytes) -> None:
        """Find the new object's id in the first events of a stream, and claim it."""
        if self.scan is None:
            return
        self.scanned += len(chunk)
        try:
            events = self.scan.feed(chunk)
        except EventTooLarge:
            self.scan = None  # a first event this large names no new object
            return
        for event in events:
            payload = _json(event.data)
            inner = payload.get("response") if isinstance(payload, dict) else None
            if isinstance(inner, dict) and isinstance(inner.get("id"), str):
                self.scan = None  # done looking
                await self._claim([inner["id"]])
                return
        if self.scanned > STREAM_SCAN_BYTES:
            self.scan = None  # no id in the stream's first events: not one to claim

    async def _claim(self, object_ids: list[str]) -> None:
        if object_ids and self.decision.kind is not None:
            await self.team.claim(self.member, self.decision.kind, object_ids)

    async def _record(self) -> None:
        """Count the request once, before its last byte goes out (so a limit holds for the
        caller's very next request)."""
        if self.recorded:
            return
        self.recorded = True
        record = record_of(self.scope)
        await self.team.record_usage(self.member, record.model, record.usage, self.admission)

    async def finish(self) -> None:
        """Count a request that ended without a complete answer (hang-up, error)."""
        await self._record()


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # no type named: the routes read such bodies as JSON


def _ids(data: dict[str, Any], kind: str | None) -> list[str]:
    fields = next((fields for k, fields in CREATES.values() if k == kind), ())
    return [data[field] for field in fields if isinstance(data.get(field), str)]


def _object_id(item: dict[str, Any]) -> str | None:
    for field in ("id", "file_id", "batch_id"):
        if isinstance(item.get(field), str):
            value: str = item[field]
            return value
    return None


def _json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
