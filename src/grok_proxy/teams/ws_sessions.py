"""The WebSocket side of a shared proxy: a member's session checked, scoped and counted.

What counts as a request (docs/teams.md, "Other protocols"):

- Opening a session is one request: its route and the `model` of its URL are checked and
  the limits applied before the upstream handshake; a refusal answers the handshake with
  the HTTP status and envelope the REST routes give. It is counted at once (no tokens), so
  a long session never holds the member's turn near a budget.
- On `realtime` and `responses`, each `response.create` is one more request: checked
  before it is relayed on the model the upstream uses for that turn (its own `model`, else
  the URL's; never an earlier turn's), and counted with
  the usage of the `response.done` / `response.completed` (or failed, incomplete) that ends
  it, before that event reaches the caller. A refusal is an `error` event in xAI's shape;
  the event is not relayed and the session stays open.
- Every caller message on those routes, text or binary, is parsed and decided on its
  parsed value (issue 24): one that is not a JSON object gets an `error` event and is not
  relayed. Models are checked wherever they are named (every `model` of the URL, and
  every model a `session.update` or `response.create` names: `model`, `session.model`,
  `response.model`).
- A member limited to some models names one wherever a default would otherwise be used,
  as on HTTP: a `realtime` session in its URL (server-started responses name none), a
  `responses` turn in the event or the URL.
- A response the server starts by itself (voice activity detection) cannot be refused
  before it starts; it is counted, with its usage, when it ends.

On `responses`, a `previous_response_id` (or a `file_id`) naming another member's object
is refused as on HTTP, and the `response.created` event makes the new response the
member's. `tts` and `stt` sessions report no token usage: they count one request each.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson

from grok_proxy.calls.auth import Caller
from grok_proxy.calls.bodies import is_large, parse_elsewhere, parse_json
from grok_proxy.calls.errors import InvalidRequest, MissingApiKey, ProxyError, error_type
from grok_proxy.calls.usage import Usage, from_event
from grok_proxy.teams.errors import DatabaseUnavailable, NotAllowed
from grok_proxy.teams.gate import model_required
from grok_proxy.teams.members import Member
from grok_proxy.teams.scope import references
from grok_proxy.teams.team import DB_ERRORS, Admission, MemberCaller, Team

# The session routes a shared proxy relays; others may keep state it cannot scope.
SHARED_ROUTES = frozenset({"realtime", "responses", "tts", "stt"})
# Routes whose `response.create` events are requests of their own.
TURN_ROUTES = frozenset({"realtime", "responses"})
# Server events that end a response, with its usage.
ENDS = frozenset({"response.done", "response.completed", "response.failed", "response.incomplete"})
CREATE = "response.create"
# Cheap looks before a server event is parsed: most (audio deltas) end nothing.
SERVER_MARK = '"response.'
ERROR_MARK = '"error"'


def error_event(error: ProxyError, client_event: dict[str, Any] | None = None) -> str:
    """A refusal as xAI's `error` event (the realtime shape, with the HTTP status beside it
    as the Responses WebSocket mode sends it)."""
    message = error.message
    retry_after = error.headers.get("retry-after")
    if retry_after:
        message = f"{message} Retry after {retry_after} s."
    body: dict[str, Any] = {
        "type": error_type(error.status),
        "code": error.code,
        "message": message,
        "param": error.param,
    }
    event_id = client_event.get("event_id") if client_event else None
    if isinstance(event_id, str):
        body["event_id"] = event_id  # which client event was refused
    return orjson.dumps({"type": "error", "status": error.status, "error": body}).decode()


async def secret_caller(team: Team, route: str, token: str, fingerprint: str) -> Caller | None:
    """The member behind an ephemeral token (`xai-client-secret.<token>`), or None for one
    minted elsewhere, which xAI checks itself.

    Either way the session is on a route a shared proxy relays, a token minted elsewhere is
    refused when TEAM_CLIENT_SECRETS=minted, and a database that cannot say whose a token
    is answers 503 (not a 500).
    """
    if route not in SHARED_ROUTES:
        raise _not_shared(route)
    try:
        caller = await team.secret_caller(token, fingerprint)
    except DB_ERRORS:
        raise DatabaseUnavailable(
            "The team database is unreachable, so this token's member cannot be known; "
            "try again shortly."
        ) from None
    if caller is None and team.settings.teams.client_secrets == "minted":
        raise MissingApiKey(
            "This proxy accepts only ephemeral tokens minted through it "
            "(POST /v1/realtime/client_secrets with an access key).",
            code="invalid_client_secret",
        )
    return caller


def _not_shared(route: str) -> NotAllowed:
    return NotAllowed(
        f"The WebSocket route /{route} is not available through this shared proxy: it is not "
        "known to keep each member's objects apart.",
        code="route_not_shared",
    )


def session_gate(team: Team, caller: Caller, route: str, models: list[str]) -> SessionGate:
    """The gate of one session by an admitted caller (a member: the team's auth admitted it).

    `models`: every `model` of the URL's query (the upstream may read any of them).
    """
    assert isinstance(caller, MemberCaller)
    gate = SessionGate(team, caller.member, route, models[0] if models else None)
    gate.url_models = models
    return gate


class SessionGate:
    """One member's WebSocket session: what it may open, which turns it may start, what it used."""

    def __init__(self, team: Team, member: Member, route: str, model: str | None) -> None:
        self.team = team
        self.member = member
        self.route = route
        self.model = model
        self.turns = route in TURN_ROUTES
        # Admitted `response.create` events whose response has not ended yet, oldest first;
        # `started` once the server's `response.created` for it arrived.
        self.pending: deque[_Turn] = deque()
        self.url_models: list[str] = [model] if model else []

    async def open(self) -> None:
        """Check the session before the upstream handshake (ProxyError: refuse it)."""
        if self.route not in SHARED_ROUTES:
            raise _not_shared(self.route)
        for model in self.url_models[1:]:
            self._allowed(model)
        if self.route == "realtime" and self.model is None and self.member.limits.models:
            # The voice model would be the default, and with server voice activity
            # detection responses start without a turn that could name one.
            raise model_required(self.member, "in the URL (`?model=...`)")
        admission = await self.team.check(self.member, self.route, self.model)
        await self.team.record_usage(self.member, self.model, None, admission)

    async def from_caller(self, data: str | bytes) -> str | None:
        """None when the message may go upstream; else the error event answering it.

        Every caller message of a turn route is parsed, text or binary, and decided on its
        parsed `type`: raw-text looks would miss `"response\\u002ecreate"`, which the
        upstream reads as `response.create`. What cannot be parsed is not relayed.
        """
        if not self.turns:
            return None
        raw = data.encode() if isinstance(data, str) else data
        try:
            # A large event (base64 audio, a long input) is read in a parser process, so
            # the other sessions and requests of this worker are not held up meanwhile.
            event = (
                await parse_elsewhere(raw, read_event)
                if is_large(raw)
                else read_event(parse_json(raw))
            )
        except ProxyError as refused:
            return error_event(refused)
        if event is None:
            return error_event(
                InvalidRequest("A client event must be a JSON object.", code="invalid_event")
            )
        about = {"event_id": event.event_id}
        try:
            await self.team.require_all(self.member, event.references)
            if event.kind not in (CREATE, "session.update"):
                return None
            for named in event.models:
                self._allowed(named)
            if event.kind != CREATE:
                return None
            # What the upstream uses for this turn: its own `model`, else the URL's (never
            # an earlier turn's: each turn without one gets the URL's model or a default).
            own = event.turn_model
            model = own if isinstance(own, str) and own else self.model
            if model is None and self.member.limits.models:
                raise model_required(self.member, "in the event or the URL")
            admission = await self.team.check(self.member, self.route, model)
        except ProxyError as refused:
            return error_event(refused, about)
        self.pending.append(_Turn(model, admission))
        return None

    def _allowed(self, model: object) -> None:
        """Refuse a model named anywhere the member may not use (a non-string one too)."""
        if model is None or (isinstance(model, str) and self.member.limits.allows_model(model)):
            return
        raise NotAllowed(
            f"Member {self.member.name} may not use model {model} on this proxy.",
            code="model_not_allowed",
            param="model",
        )

    async def from_upstream(self, data: str | bytes) -> None:
        """Read a server event on its way to the caller: new responses, ends and usage."""
        if not self.turns or not isinstance(data, str):
            return
        if SERVER_MARK not in data and ERROR_MARK not in data:
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "response.created":
            await self._started(event)
        elif kind in ENDS:
            await self._ended(from_event(event), _served_model(event))
        elif kind == "error":
            # A `response.create` the server refused (unknown previous response, busy)
            # starts no response: it ends here, without usage.
            turn = next((t for t in self.pending if not t.started), None)
            if turn is not None:
                self.pending.remove(turn)
                await self.team.record_usage(self.member, turn.model, None, turn.admission)

    async def _started(self, event: dict[str, Any]) -> None:
        turn = next((t for t in self.pending if not t.started), None)
        if turn is not None:
            turn.started = True
        response = event.get("response")
        if self.route == "responses" and isinstance(response, dict):
            response_id = response.get("id")
            if isinstance(response_id, str):
                # A stored response is readable (over HTTP, or as a later turn's
                # previous_response_id) by its creator only; claimed before the caller
                # learns its id.
                await self.team.claim(self.member, "response", [response_id])

    async def _ended(self, usage: Usage | None, served: str | None) -> None:
        """Count a response that ended under the model the server says served it (else
        the model its turn was admitted on)."""
        if self.pending:
            turn = self.pending.popleft()
            model = served or turn.model
            await self.team.record_usage(self.member, model, usage, turn.admission)
        else:  # started by the server itself (voice activity detection)
            await self.team.record_usage(self.member, served or self.model, usage)

    async def close(self) -> None:
        """The session ended: count the turns that never ended, giving their turns back."""
        while self.pending:
            turn = self.pending.popleft()
            await self.team.record_usage(self.member, turn.model, None, turn.admission)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """What the gate reads from a caller's event, and nothing else: small values, so a
    large event can be parsed and read in a parser process (bodies.parse_elsewhere)."""

    kind: Any  # its `type`
    references: list[tuple[str, str]]  # every (kind, id) it names, at any depth
    models: tuple[Any, ...]  # every model it names: `model`, `session.model`, `response.model`
    turn_model: Any  # its own `model`: what the upstream uses for a Responses-mode turn
    event_id: str | None


def read_event(value: Any) -> ClientEvent | None:
    """The gate's reading of a parsed client event; None when it is not a JSON object.

    Names that are not strings stay what they are unless large (then a placeholder that is
    not a string either): either way no model check lets them through.
    """
    if not isinstance(value, dict):
        return None
    event_id = value.get("event_id")
    return ClientEvent(
        kind=_small(value.get("type")),
        references=references(value),
        models=tuple(_small(model) for model in _named_models(value)),
        turn_model=_small(value.get("model")),
        event_id=event_id if isinstance(event_id, str) else None,
    )


def _small(value: Any) -> Any:
    """Strings, numbers and null as they are; a container as a short stand-in."""
    if isinstance(value, dict | list):
        return _Container(type(value).__name__)
    return value


@dataclass(frozen=True, slots=True)
class _Container:
    """A JSON object or array where a name was expected (a model must be a string)."""

    kind: str

    def __str__(self) -> str:
        return f"<a JSON {'object' if self.kind == 'dict' else 'array'}>"


def _named_models(event: dict[str, Any]) -> list[Any]:
    """Every model an event names, where the upstream may read one: its own `model`, and
    the `model` of its `session` (session.update) and of its `response` (response.create)."""
    named = [event.get("model")]
    for part in ("session", "response"):
        inner = event.get(part)
        if isinstance(inner, dict):
            named.append(inner.get("model"))
    return [model for model in named if model is not None]


def _served_model(event: dict[str, Any]) -> str | None:
    """The model a server event says served its response (`response.model`)."""
    response = event.get("response")
    model = response.get("model") if isinstance(response, dict) else None
    return model if isinstance(model, str) and model else None


class _Turn:
    __slots__ = ("admission", "model", "started")

    def __init__(self, model: str | None, admission: Admission) -> None:
        self.model = model
        self.admission = admission
        self.started = False


class TeamSessions:
    """The team's WebSocket policy (policies.SessionPolicy): members' sessions."""

    def __init__(self, team: Team) -> None:
        self.team = team
        self.auth = team.caller_auth()

    async def secret_caller(self, route: str, token: str, fingerprint: str) -> Caller | None:
        return await secret_caller(self.team, route, token, fingerprint)

    def gate(self, caller: Caller, route: str, models: list[str]) -> SessionGate:
        return session_gate(self.team, caller, route, models)
