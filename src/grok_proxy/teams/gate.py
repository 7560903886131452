"""The HTTP side of a shared proxy: a pure-ASGI middleware in front of the API routes.

Per request under /api/v1: the member behind the access key, the path's scope (scope.py),
ownership of the objects it names, the member's limits; then the route runs as usual, and
the gate claims the objects the answer creates, cuts lists to the member's objects and
counts the usage. Every refusal happens before anything goes upstream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from grok_proxy.calls.auth import ADMITTED, bearer_token
from grok_proxy.calls.bodies import PARSED_BODY, is_large, parse_elsewhere, parse_json, read_body
from grok_proxy.calls.errors import Flavor, ProxyError, envelope_bytes, flavor_in
from grok_proxy.calls.record import record_of
from grok_proxy.calls.reply import send_json
from grok_proxy.calls.sse import EventTooLarge, SseParser
from grok_proxy.serving.paths import API_PREFIX
from grok_proxy.teams.activity import mark_member
from grok_proxy.teams.errors import DatabaseUnavailable, NotAllowed
from grok_proxy.teams.members import Member
from grok_proxy.teams.scope import CREATES, MODEL_ROUTES, Action, Decision, references
from grok_proxy.teams.team import DB_ERRORS, OUTPUT_LIMITS, Admission, Team, TeamAuth

log = logging.getLogger("grok_proxy.teams")

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Uploads (multipart): the bodies that are not JSON. A file, or audio to transcribe
# (`stt`, whose form names no model in xAI's API): nothing in them names an object or a
# model the gate guards, so they stream through unread and memory stays flat.
UPLOAD_ROUTES = frozenset({"files", "stt"})
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


class TeamGate:
    """Admits members, scopes their objects, enforces limits and counts usage (HTTP)."""

    def __init__(self, app: ASGIApp, *, team: Team, admin: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.team = team
        self.admin = admin
        self.max_body_bytes = max_body_bytes

    @cached_property
    def auth(self) -> TeamAuth:
        """Member keys in, the member's upstream key out (the caller the routes take)."""
        return self.team.caller_auth()

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
        # A member's failed answers, refusals included, are noted for the console.
        send = self.team.activity.watch(scope, send)
        try:
            await self._gated(scope, receive, send, path[len(API_PREFIX) + 1 :])
        except ProxyError as exc:
            await send_json(send, exc.status, envelope_bytes(flavor_in(scope), exc), exc.headers)

    async def _gated(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        decision = self.team.scope_path(method, route)
        if decision.action is Action.OPEN:
            await self.app(scope, receive, send)
            return
        where = "an `Authorization: Bearer <key>` header"
        presented = presented_key(scope)
        caller = self.auth.admit(presented, where=where)
        member = caller.member
        # The routes take the caller admitted here: the key is checked once.
        scope[ADMITTED] = caller
        mark_member(scope, member.id)
        record = record_of(scope)
        record.key_fingerprint = caller.fingerprint
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
        facts, receive = await self._body(scope, receive, route)
        model, claims_answer = await self._inspect(member, decision, facts)
        if model is None and member.limits.models and route in MODEL_ROUTES:
            raise model_required(member)
        if decision.action is Action.OBJECT:
            assert decision.kind is not None
            assert decision.object_id is not None
            await self.team.require_all(member, [(decision.kind, decision.object_id)])
        if model is not None and record.model is None:
            record.model = model  # before the check: a refusal's log line names it too
        deferred = claims_answer and decision.kind == "deferred"
        limits = facts.output_limits if facts is not None else None
        admission = await self.team.check(member, route, model, deferred=deferred, body=limits)
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

    async def _body(
        self, scope: Scope, receive: Receive, route: str
    ) -> tuple[BodyFacts | None, Receive]:
        """What the gate reads from the parsed request body (None without one), and a
        receive that replays its bytes.

        Whatever its Content-Type: the routes read a body as JSON whatever its label, and
        xAI does too, so the checks must see it as JSON as well. A body that is not JSON is
        refused here (400): forwarded unchecked, it could name anything. The parsed value
        goes to the route with the bytes (bodies.PARSED_BODY): one parse decides both.
        """
        if scope["method"] not in BODY_METHODS or route in UPLOAD_ROUTES:
            return None, receive
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value.decode("latin-1")
        body = await read_body(receive, self.max_body_bytes, length)
        if not body.strip():
            return None, receive_once(body, receive)
        if is_large(body):
            # Parsed and read in a parser process, so other callers are not held up; the
            # route parses the same bytes there again for its own checks.
            facts = await parse_elsewhere(body, body_facts)
        else:
            data = parse_json(body)
            scope[PARSED_BODY] = (body, data)
            facts = body_facts(data)
        return facts, receive_once(body, receive)

    async def _inspect(
        self, member: Member, decision: Decision, facts: BodyFacts | None
    ) -> tuple[str | None, bool]:
        """The body's model, the objects it names (owned or 404), and whether the answer
        names a new object."""
        claims_answer = decision.action is Action.CREATE
        if decision.kind == "deferred":
            claims_answer = facts is not None and facts.deferred
        if facts is None:
            return None, claims_answer
        await self.team.require_all(member, facts.references)
        if member.limits.models:
            if facts.odd_model:
                raise NotAllowed(
                    f"Member {member.name} may only name one of its allowed models as `model`.",
                    code="model_not_allowed",
                    param="model",
                )
            if decision.kind == "batch":
                self._check_batch_models(member, facts)
        return facts.model, claims_answer

    def _check_batch_models(self, member: Member, facts: BodyFacts) -> None:
        """A batch runs requests of its own, each naming a model: a member limited to some
        models names one of them in every request, and cannot batch a file's requests (the
        gate does not read files)."""
        if facts.input_file_id:
            raise NotAllowed(
                f"Member {member.name} is limited to some models, so its batches take their "
                "requests in `batch_requests` (a file's requests are not checked here).",
                code="model_not_allowed",
                param="input_file_id",
            )
        for model in sorted(facts.batch_models, key=str):
            if model is None or not member.limits.allows_model(model):
                raise NotAllowed(
                    f"Member {member.name} may not use model {model} on this proxy "
                    "(each batch request must name one of its allowed models).",
                    code="model_not_allowed",
                    param="batch_requests",
                )


def model_required(member: Member, where: str = "as `model`") -> NotAllowed:
    """The refusal of a request by a member limited to some models that names none."""
    return NotAllowed(
        f"Member {member.name} is limited to some models: name one of them {where} "
        "(without one, a default model would be used).",
        code="model_not_allowed",
        param="model",
    )


@dataclass(frozen=True, slots=True)
class BodyFacts:
    """What the gate reads from a JSON request body, and nothing else: small values, so a
    large body can be parsed and read in a parser process (bodies.parse_elsewhere)."""

    # Every (kind, id) the body names, at any depth (scope.references).
    references: list[tuple[str, str]]
    # The top-level `model` when it is a string; `odd_model` when it is there but is not.
    model: str | None
    odd_model: bool
    # `"deferred": true` (a chat completion answered later).
    deferred: bool
    # A batch of a file's requests (`input_file_id`), and the model of each request in
    # `batch_requests` (None for an item that names no string model, or no request: xAI
    # would use a default model for it, or read it some way the gate cannot check).
    input_file_id: bool
    batch_models: frozenset[str | None]
    # max_tokens and its kin, for the budget's reservation (Team.check).
    output_limits: dict[str, int]


def body_facts(data: Any) -> BodyFacts:
    """The gate's facts of a parsed JSON body."""
    top = data if isinstance(data, dict) else {}
    model = top.get("model")
    batch_models: set[str | None] = set()
    items = top.get("batch_requests")
    for item in items if isinstance(items, list) else []:
        payload = item.get("batch_request") if isinstance(item, dict) else None
        requests = list(payload.values()) if isinstance(payload, dict) else []
        for request in requests or [None]:  # an item without a request names no model
            named = request.get("model") if isinstance(request, dict) else None
            batch_models.add(named if isinstance(named, str) else None)
    return BodyFacts(
        references=references(data),
        model=model if isinstance(model, str) else None,
        odd_model=model is not None and not isinstance(model, str),
        deferred=top.get("deferred") is True,
        input_file_id="input_file_id" in top,
        batch_models=frozenset(batch_models),
        output_limits={
            name: value
            for name in OUTPUT_LIMITS
            if isinstance(value := top.get(name), int) and not isinstance(value, bool)
        },
    )


def receive_once(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then listens on the caller."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


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
        await self.team.record_usage(
            self.member,
            record.model,
            record.usage,
            self.admission,
            streamed=record.streamed,
            relayed=record.relayed_events,
        )

    async def finish(self) -> None:
        """Count a request that ended without a complete answer (hang-up, error)."""
        await self._record()


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
