"""The WebSocket relay: xAI's realtime, Responses WebSocket mode, TTS and STT sockets.

Every WebSocket upgrade under `/api/v1` (and `/v1`, aliased by `entry.Entry`) becomes an upstream
connection to the same path and query below the configured base URL. The caller's handshake
is accepted only once the upstream's succeeded, so a refusal reaches the caller with xAI's
own status and message (ASGI's `websocket.http.response` extension). After that, messages
go both ways unchanged and in order; each side waits for the other to take a message before
reading the next (back-pressure), and a close on either side closes the other.

In a shared proxy (teams) a session is a member's: `teams.ws_sessions` checks it before
the upstream handshake, checks each `response.create` before relaying it, and counts the
usage of each response (docs/teams.md, "Other protocols").

A session has one `RequestRecord`, as an HTTP request has, and is reported to the same
observers (serving/observers.py: metrics, the access line, traces) once, as it ends; per
message the relay only adds to the record's tallies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.frames import EXTERNAL_CLOSE_CODES, CloseCode
from websockets.typing import Subprotocol

from grok_proxy import __version__
from grok_proxy.calls.auth import Caller, CallerAuth, bearer_token
from grok_proxy.calls.errors import (
    Flavor,
    ProxyError,
    UpstreamTimeout,
    UpstreamUnreachable,
    error_envelope,
    upstream_error,
)
from grok_proxy.calls.record import WEBSOCKET, RequestRecord
from grok_proxy.calls.redact import key_fingerprint, redact, redact_header
from grok_proxy.calls.reply import deny_upgrade
from grok_proxy.calls.upstream import upstream_of
from grok_proxy.config import Settings
from grok_proxy.observability.logs import request_id
from grok_proxy.serving.access import API_PREFIX, CALLER_PATH, request_id_for
from grok_proxy.serving.lifecycle import Drain
from grok_proxy.serving.observers import Finished, Observer, finish_all, start_all

if TYPE_CHECKING:
    from grok_proxy.calls.policies import SessionGate, SessionPolicy

log = logging.getLogger("grok_proxy.websocket")

# The websockets library logs every handshake header (Authorization, client secrets) and
# every frame at debug level: its protocol objects get this logger, which never does.
QUIET = logging.getLogger("grok_proxy.websocket.protocol")
QUIET.setLevel(logging.WARNING)

CLIENT_SECRET_PREFIX = "xai-client-secret."  # noqa: S105 - a protocol name, not a secret
WHERE_KEY = (
    "an `Authorization: Bearer <key>` header, or (from a browser) an ephemeral token as the "
    "WebSocket subprotocol `xai-client-secret.<token>`"
)

# Handshake headers a caller may send upstream; everything else (cookies, Origin, Host,
# hop-by-hop and WebSocket headers) stays here. Authorization is rebuilt from the caller's key.
FORWARDED_HANDSHAKE_HEADERS = frozenset({"x-grok-conv-id", "openai-beta", "accept-language"})
FORWARDED_HANDSHAKE_PREFIXES = ("x-stainless-",)
# Upstream refusal headers worth handing back: when to retry, and rate-limit state.
RELAYED_REFUSAL_PREFIXES = (b"retry-after", b"x-ratelimit-", b"x-xai-")

# Peers may report 1005 (no code) and 1006 (connection dropped) but never send them.
CALLER_GONE: dict[int, int] = {CloseCode.NO_STATUS_RCVD: 1000, CloseCode.ABNORMAL_CLOSURE: 1001}
UPSTREAM_GONE: dict[int, int] = {CloseCode.NO_STATUS_RCVD: 1000, CloseCode.ABNORMAL_CLOSURE: 1014}
# Either side gets this long to answer a close before its connection is dropped.
CLOSE_TIMEOUT = 1.0
# The last wait for the second direction once the first has finished.
SETTLE_SECONDS = 2.0
# Upstream messages read ahead of a slow caller (websockets' default is 16).
MAX_QUEUE = 4
# Keepalive towards the upstream, as uvicorn's towards the caller (its defaults).
PING_INTERVAL = 20.0

ROUTES = {"realtime", "responses", "tts", "stt"}


def sendable(code: int, gone: dict[int, int]) -> int:
    """A close code the other side may be sent: the same one where the protocol allows it."""
    if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        return code
    return gone.get(code, 1011)


def short_reason(reason: str) -> str:
    """A close reason cut to the protocol's 123 bytes, on a character boundary."""
    data = reason.encode()
    if len(data) <= 123:
        return reason
    return data[:123].decode("utf-8", "ignore")


def payload_size(data: str | bytes) -> int:
    """Bytes on the wire of a message's payload (UTF-8 for text)."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode())


def model_in(event: str) -> str | None:
    """The `model` of a client event (Responses WebSocket mode names it per turn)."""
    try:
        data = orjson.loads(event)
    except orjson.JSONDecodeError:
        return None
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else None


class WebSocketRelay:
    """ASGI middleware that takes every WebSocket scope; HTTP goes on to the app."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        policy: SessionPolicy | None = None,
        observers: tuple[Observer, ...] = (),
    ) -> None:
        self.app = app
        self.settings = settings
        # Metrics, the access line, traces: told when each session starts and ends.
        self.observers = observers
        # Shared: member keys in, the account's key out, and each session is a member's.
        self.policy = policy
        self.auth = policy.auth if policy is not None else CallerAuth(settings)
        # The one upstream target: the same base URL, headers, roots and forward proxy
        # as the HTTP client's and the gRPC relay's (upstream.py).
        self.upstream = upstream_of(settings)
        self.base = self.upstream.ws_base_url
        self.tls = self.upstream.tls if self.base.startswith("wss:") else None
        # How to reach the upstream: through its forward proxy (TLS to an https:// one is
        # verified against the same roots), or directly (websockets reads no environment).
        proxy = self.upstream.proxy
        self.reach: dict[str, Any] = {"proxy": proxy.address if proxy else None}
        if proxy is not None and proxy.scheme == "https":
            self.reach["proxy_ssl"] = self.upstream.tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        await Session(self, scope, receive, send).run()


class Session:
    """One relayed WebSocket session, from the caller's upgrade to the last close."""

    def __init__(self, relay: WebSocketRelay, scope: Scope, receive: Receive, send: Send) -> None:
        self.relay = relay
        self.scope = scope
        self.receive = receive
        self.send = send
        self.path: str = scope["path"]
        self.caller_path: str = scope.get(CALLER_PATH, self.path)  # /v1/... as the caller sent it
        self.headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        query = scope.get("query_string", b"").decode("latin-1")
        # Every `model` of the query: a shared proxy checks each one (teams.ws_sessions).
        self.models: list[str] = parse_qs(query).get("model", [])
        name = self.path.removeprefix(API_PREFIX + "/")
        # The session's one record (calls/record.py): the observers read it as it ends.
        self.record = RequestRecord(
            request_id=request_id_for(self.headers.get("x-request-id")),
            protocol=WEBSOCKET,
            model=self.models[0] if self.models else None,
            route=name if name in ROUTES else "other",
        )
        self.status = 0
        self.upstream: ClientConnection | None = None
        self.caller_closed = False
        self.ending: asyncio.Task[None] | None = None
        self.gate: SessionGate | None = None  # a member's session in a shared proxy
        self.started = perf_counter()
        self.accounted = False
        # Sees each relayed message (only tracing asks to): None costs one test a message.
        self.listen = start_all(relay.observers, scope, self.record)

    @property
    def request_id(self) -> str:
        return self.record.request_id

    @property
    def route(self) -> str:
        return self.record.route or "other"

    async def run(self) -> None:
        token = request_id.set(self.request_id)
        try:
            message = await self.receive()
            if message["type"] != "websocket.connect":
                return
            try:
                self.upstream = await self.open_upstream()
            except ProxyError as error:
                await self.refuse(error)
                return
            await self.relay_both_ways()
        except asyncio.CancelledError:
            if self.ending is None:
                raise
            # Shutdown: the drain sent the caller its 1001, and the server's grace ran out
            # before the closing handshakes did. An expected end, not an error: re-raised,
            # the server logs a traceback for each such session (for 2,000 sessions that
            # held the event loop for 0.6 s). The access line still says how it ended.
            log.debug("session ended at shutdown before its close handshake completed")
        finally:
            await self.account()
            request_id.reset(token)

    async def account(self) -> None:
        """Count the session once: team usage, metrics and the access line.

        Called before the last wait on the upstream's close too: at shutdown, uvicorn
        cancels a session whose caller answers the 1001 close late, and the worker may stop
        (its usage flushed) before a slow upstream close is over.
        """
        if self.accounted:
            return
        self.accounted = True
        try:
            if self.gate is not None:
                await self.gate.close()  # turns that never ended are counted, turns given back
        finally:
            self.finish(self.started)

    # the handshake
    async def open_upstream(self) -> ClientConnection:
        """Connect upstream with the caller's credentials; ProxyError when that fails."""
        if not self.path.startswith(API_PREFIX + "/"):
            raise _NotFound(f"No WebSocket route {self.path}; xAI's are under /v1.")
        offered: list[str] = list(self.scope.get("subprotocols") or [])
        secrets = [p for p in offered if p.startswith(CLIENT_SECRET_PREFIX)]
        presented = bearer_token(self.headers.get("authorization", ""))
        policy = self.relay.policy
        caller: Caller | None = None
        upstream_key: str | None = None  # none with an ephemeral token: it is the credential
        if presented or not secrets:
            caller = self.relay.auth.admit(presented, where=WHERE_KEY)
            upstream_key = caller.upstream_key
        else:
            # xAI checks the ephemeral token itself; the log only ever sees its fingerprint.
            token = secrets[0][len(CLIENT_SECRET_PREFIX) :]
            self.record.key_fingerprint = key_fingerprint(token)
            if policy is not None:  # minted by a member through this proxy: its session
                route = self.path.removeprefix(API_PREFIX + "/")
                caller = await policy.secret_caller(route, token, self.record.key_fingerprint)
        if caller is not None:
            self.record.key_fingerprint = caller.fingerprint
            if policy is not None:
                route = self.path.removeprefix(API_PREFIX + "/")
                self.gate = policy.gate(caller, route, self.models)
                self.record.member_id = self.gate.member.id
                await self.gate.open()  # refusals answer the handshake: nothing went upstream
        headers = {
            name: value
            for name, value in self.headers.items()
            if name in FORWARDED_HANDSHAKE_HEADERS or name.startswith(FORWARDED_HANDSHAKE_PREFIXES)
        }
        upstream = self.relay.upstream
        headers.update(upstream.headers(upstream_key) if upstream_key else upstream.preset_headers)
        if self.record.on_forward is not None:  # traceparent naming the session's span
            headers.update(self.record.on_forward(None))
        raw_path: bytes = self.scope.get("raw_path") or self.path.encode()
        suffix = raw_path.decode("latin-1")[len(API_PREFIX) :]
        query = self.scope.get("query_string", b"").decode("latin-1")
        uri = self.relay.base + suffix + (f"?{query}" if query else "")
        settings = self.relay.settings
        try:
            return await connect(
                uri,
                additional_headers=headers,
                subprotocols=[Subprotocol(p) for p in offered] or None,
                user_agent_header=self.headers.get("user-agent", f"grok-proxy/{__version__}"),
                compression=None,
                open_timeout=settings.upstream.connect_timeout,
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_INTERVAL,
                close_timeout=CLOSE_TIMEOUT,
                max_size=settings.limits.ws_max_message_bytes,
                # Messages read ahead from the upstream while the caller is slow: with large
                # messages each one held costs up to WS_MAX_MESSAGE_BYTES.
                max_queue=MAX_QUEUE,
                ssl=self.relay.tls,
                **self.relay.reach,
                logger=QUIET,
            )
        except InvalidStatus as refused:
            response = refused.response
            content_type = response.headers.get("content-type", "")
            error = upstream_error(response.status_code, bytes(response.body or b""), content_type)
            error.headers = {
                name.lower(): redact(value)
                for name, value in response.headers.raw_items()
                if name.lower().encode().startswith(RELAYED_REFUSAL_PREFIXES)
            }
            raise error from None
        except TimeoutError:
            raise UpstreamTimeout(
                f"The upstream did not complete the WebSocket handshake within "
                f"{settings.upstream.connect_timeout:g} s (setting XAI_CONNECT_TIMEOUT)."
            ) from None
        except (OSError, InvalidHandshake, InvalidURI) as failed:
            log.warning("upstream WebSocket handshake failed: %s", failed)
            raise UpstreamUnreachable(
                f"Could not open a WebSocket to the upstream: {type(failed).__name__}."
            ) from None

    async def refuse(self, error: ProxyError) -> None:
        """Answer the caller's upgrade with an HTTP status and the JSON error envelope."""
        self.status = error.status
        body = orjson.dumps(
            error_envelope(Flavor.OPENAI, error.status, error.message, code=error.code)
        )
        headers = [(b"x-request-id", self.request_id.encode())]
        headers += [(name.encode(), value.encode()) for name, value in error.headers.items()]
        await deny_upgrade(self.scope, self.send, error.status, body, headers)

    # the session
    async def relay_both_ways(self) -> None:
        upstream = self.upstream
        assert upstream is not None
        headers = [(b"x-request-id", self.request_id.encode())]
        upstream_id = upstream.response.headers.get("x-request-id") if upstream.response else None
        if upstream_id:
            headers.append((b"x-upstream-request-id", redact_header(upstream_id.encode("latin-1"))))
        try:
            await self.send(
                {
                    "type": "websocket.accept",
                    "subprotocol": upstream.subprotocol,
                    "headers": headers,
                }
            )
        except OSError:
            # The caller left while the upstream was being opened.
            self.note_close(1001, "caller")
            await upstream.close(1001)
            return
        self.status = 101
        drain = _drain_of(self.scope)
        if drain is not None:
            drain.streams.add(self)
        up = asyncio.ensure_future(self.caller_to_upstream(upstream))
        down = asyncio.ensure_future(self.upstream_to_caller(upstream))
        try:
            _, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                # Each direction closes the other side when it ends, so the second one
                # finishes on its own; this bound only covers a peer that never answers.
                _, pending = await asyncio.wait(pending, timeout=SETTLE_SECONDS)
        finally:
            for task in (up, down):
                task.cancel()
            if drain is not None:
                drain.streams.discard(self)
            await self.account()
            await upstream.close(1001)

    async def caller_to_upstream(self, upstream: ClientConnection) -> None:
        receive = self.receive
        record = self.record
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                if self.gate is not None and (refusal := await self.gate.from_caller(data)):
                    # Not relayed (nor counted as relayed): the caller hears why, and the
                    # session goes on.
                    try:
                        await self.send({"type": "websocket.send", "text": refusal})
                    except (OSError, RuntimeError):
                        return  # the caller is gone; its disconnect ends the session
                    continue
                if self.listen is not None:
                    self.listen(message)
                record.messages_in += 1
                if record.messages_in == 1 and record.model is None and isinstance(data, str):
                    record.model = model_in(data)
                record.bytes_in += payload_size(data)
                try:
                    await upstream.send(data)
                except ConnectionClosed:
                    return  # the other direction reports and relays the upstream's close
            elif kind == "websocket.disconnect":
                self.caller_closed = True
                code = message.get("code", 1005)
                reason = message.get("reason") or ""
                self.note_close(code, "caller")
                await upstream.close(sendable(code, CALLER_GONE), short_reason(reason))
                return

    async def upstream_to_caller(self, upstream: ClientConnection) -> None:
        send = self.send
        record = self.record
        while True:
            try:
                data = await upstream.recv()
            except ConnectionClosed as closed:
                frame = closed.rcvd or closed.sent
                code = frame.code if frame is not None else CloseCode.ABNORMAL_CLOSURE
                reason = frame.reason if frame is not None else "The upstream connection was lost."
                self.note_close(code, "upstream")
                await self.close_caller(sendable(code, UPSTREAM_GONE), reason)
                return
            if self.gate is not None:
                await self.gate.from_upstream(data)  # counted before the caller sees the end
            record.messages_out += 1
            record.bytes_out += payload_size(data)
            message: Message = (
                {"type": "websocket.send", "text": data}
                if isinstance(data, str)
                else {"type": "websocket.send", "bytes": data}
            )
            if self.listen is not None:
                self.listen(message)
            try:
                await send(message)
            except (OSError, RuntimeError):
                # The caller is gone; its disconnect reaches the other direction.
                return

    async def close_caller(self, code: int, reason: str) -> None:
        if self.caller_closed:
            return
        self.caller_closed = True
        message = {"type": "websocket.close", "code": code, "reason": short_reason(reason)}
        with contextlib.suppress(OSError, RuntimeError):  # already gone
            await self.send(message)

    def note_close(self, code: int, by: str) -> None:
        record = self.record
        if record.closed_by is None:
            record.close_code, record.closed_by = code, by

    def end(self, reason: str) -> None:
        """Shutdown: close the caller with 1001 and a reason; the upstream follows."""
        if self.ending is None:
            self.note_close(1001, "proxy")
            self.ending = asyncio.ensure_future(self.close_caller(1001, reason))

    # accounting
    def finish(self, started: float) -> None:
        """Tell the observers the session ended: metrics, the access line, the trace."""
        done = Finished(
            self.scope,
            self.caller_path,
            self.record,
            self.status or 499,
            started,
            None,
            perf_counter(),
        )
        finish_all(self.relay.observers, done)


class _NotFound(ProxyError):
    status = 404
    code = "not_found"


def _drain_of(scope: Scope) -> Drain | None:
    """The worker's lifecycle.Drain, so a shutdown ends sessions with 1001 after the grace."""
    app = scope.get("app")
    drain = getattr(getattr(app, "state", None), "drain", None)
    return drain if isinstance(drain, Drain) else None
