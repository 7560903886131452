"""The simulator's WebSocket side: xAI's realtime, Responses WebSocket mode, TTS and STT.

The HTTP server hands over a connection whose request asked for an upgrade; the websockets
library's Sans-I/O `ServerProtocol` then speaks the protocol on the same socket
(ws_wire.py). Each path plays a deterministic script, each API in a module of its own
(voice.py, ws_responses.py, speech.py):

==================  =====================================================================
path                script
==================  =====================================================================
/v1/realtime        `session.created`; audio appends and commits; `response.create` ->
                    paced audio and transcript deltas (text deltas for text-only
                    sessions), a call of a declared function tool (the forced one, else
                    the first) with arguments valid for its `parameters` unless
                    `tool_choice` is `none`, `response.done`; after `function_call_output`
                    items it answers "The tool returned: <output>" and calls nothing
/v1/responses       per `response.create`, the events of the SSE stream, one per
                    message; `previous_response_id` must name an earlier response
/v1/tts             `text.delta` -> `audio.delta` per word; `text.done` -> `audio.done`
/v1/stt             binary audio -> `transcript.partial`; `{"type": "audio.done"}` ->
                    `transcript.done` (how the simulator is told the audio ended)
==================  =====================================================================

Keys: `Authorization: Bearer <key>`, or the subprotocol `xai-client-secret.<value>` with a
value from `POST /v1/realtime/client_secrets`. Faults ride in the `model` query parameter
(`grok-voice-latest@close=4000,after=3`) or, on any path, a `sim` query parameter:

=============  ==============================================================
directive      effect
=============  ==============================================================
status=N       refuse the handshake with HTTP N and an xAI-shaped error body
retry_after=S  with status: send `Retry-After: S`
reset          drop the connection instead of answering the handshake
hang           never answer the handshake
close=CODE     close the session with CODE (after `after=N` server messages)
stall=N        send N server messages, then nothing more (still reading)
pace=MS        wait MS milliseconds before each delta (realtime default 20)
echo           send every message back unchanged, text or binary
flood=N        at once, N binary messages of `size=BYTES` (default 65536), each
               starting with its index as 8 big-endian bytes (back-pressure tests)
=============  ==============================================================

Tests see each session through ``GET /_sim/websockets`` (what arrived, with sizes and
SHA-256 of each message, and how it ended) and the ``ws_*`` counters of ``/_sim/stats``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable
from functools import partial
from urllib.parse import parse_qs

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from grok_proxy.simulator.core import (
    Kit,
    number,
    parse_directives,
    split_model,
    xai_error,
)
from grok_proxy.simulator.speech import stt, tts
from grok_proxy.simulator.voice import voice
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest
from grok_proxy.simulator.ws_responses import responses as ws_responses
from grok_proxy.simulator.ws_wire import (
    CLIENT_SECRET_PREFIX,
    Closed,
    Context,
    Out,
    Script,
    SessionRecord,
    SimSocket,
)
from grok_proxy.simulator.xai import Simulator

log = logging.getLogger("grok_proxy.simulator.realtime")


class Realtime:
    """The simulator's WebSocket paths, client secrets and introspection."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.client_secrets: dict[str, float] = {}
        self.sessions: deque[SessionRecord] = deque(maxlen=500)
        self.scripts: dict[str, Script] = {
            "/v1/realtime": partial(voice, simulator),
            "/v1/responses": partial(ws_responses, simulator),
            "/v1/tts": tts,
            "/v1/stt": stt,
        }
        simulator.exact[("POST", "/realtime/client_secrets")] = self.create_client_secret
        simulator.controls[("GET", "/_sim/websockets")] = self.list_sessions
        # /_sim/reset forgets the sessions too.
        reset_http = simulator.controls[("POST", "/_sim/reset")]

        def reset(request: SimRequest) -> Outcome | Awaitable[Outcome]:
            self.sessions.clear()
            return reset_http(request)

        simulator.controls[("POST", "/_sim/reset")] = reset

    # plumbing
    def upgrade(self, transport: asyncio.Transport, request: SimRequest, rest: bytes) -> None:
        """Take over a connection whose HTTP request asked to become a WebSocket."""
        socket = SimSocket(self, transport)
        transport.set_protocol(socket)
        # The Sans-I/O protocol parses the handshake itself: give it the request again.
        head = f"{request.method} {request.path}" + (f"?{request.query}" if request.query else "")
        lines = [f"{head} HTTP/1.1"] + [
            f"{name}: {value}" for name, value in request.headers.items()
        ]
        socket.data_received(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + rest)

    def handshake(self, socket: SimSocket, request: Request) -> None:
        path, _, query_text = request.path.partition("?")
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        self.simulator.requests.append(SimRequest("GET", path, query_text, headers, b""))
        self.simulator.count("requests")
        self.simulator.count("ws_handshakes")
        query = parse_qs(query_text)
        model, directives = split_model(query.get("model", [""])[0])
        directives |= parse_directives(query.get("sim", [""])[0])
        if "reset" in directives:
            if socket.transport is not None:
                socket.transport.abort()
            return
        if "hang" in directives:
            return
        route = path[path.rfind("/v1/") :] if "/v1/" in path else path
        script = self.scripts.get(route)
        refusal, subprotocol = self.check(request, directives)
        if refusal is None and script is None:
            refusal = xai_error(404, f"No WebSocket route {path}.")
        if refusal is not None:
            self.simulator.count("ws_refused")
            response = Response(
                refusal.status,
                "Refused",
                Headers([("Content-Type", refusal.content_type), *refusal.headers]),
                refusal.body,
            )
            socket.conn.send_response(response)
            socket.flush()
            if socket.transport is not None:
                socket.transport.close()
            return
        assert script is not None
        if "echo" in directives:
            script = self.echo
        elif "flood" in directives:
            script = self.flood
        response = socket.conn.accept(request)
        if response.status_code != 101:  # not a valid WebSocket handshake after all
            socket.conn.send_response(response)
            socket.flush()
            return
        if subprotocol:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
        socket.conn.send_response(response)
        socket.record = SessionRecord(path, query_text, subprotocol)
        self.sessions.append(socket.record)
        self.simulator.count("ws_sessions")
        context = Context(route, query, model, directives)
        default_pace = 20 if route == "/v1/realtime" else 0
        out = Out(socket, directives, default_pace)
        socket.task = asyncio.ensure_future(self.play(script, socket, out, context))

    def check(
        self, request: Request, directives: dict[str, str]
    ) -> tuple[Reply | None, str | None]:
        """The refusal for this handshake (or None), and the subprotocol to select."""
        offered = [
            token.strip()
            for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for token in header.split(",")
        ]
        secret = next((p for p in offered if p.startswith(CLIENT_SECRET_PREFIX)), None)
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        if key and "invalid" in key:
            return xai_error(401, "Incorrect API key provided."), None
        if not key:
            if secret is None:
                return xai_error(401), None
            expires = self.client_secrets.get(secret[len(CLIENT_SECRET_PREFIX) :])
            if expires is None or expires < time.time():
                return xai_error(401, "The client secret is invalid or has expired."), None
        status = number(directives, "status")
        if status:
            headers = (
                [("Retry-After", directives["retry_after"])] if "retry_after" in directives else []
            )
            return xai_error(status, headers=headers), None
        return None, secret

    async def play(self, script: Script, socket: SimSocket, out: Out, context: Context) -> None:
        try:
            await script(socket, out, context)
        except Closed:
            return
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("simulator WebSocket script failed")
            socket.close(1011, "simulator bug")

    # HTTP routes
    def create_client_secret(self, request: SimRequest) -> Reply:
        body = Kit.json_body(request) if request.body.strip() else {}
        if isinstance(body, Reply):
            return body
        seconds = (body.get("expires_after") or {}).get("seconds", 600)
        if not isinstance(seconds, int) or not 1 <= seconds <= 3600:
            return xai_error(400, "expires_after.seconds must be between 1 and 3600.")
        value = "xai-sim-cs-" + secrets.token_urlsafe(18)
        expires_at = int(time.time()) + seconds
        self.client_secrets[value] = expires_at
        return Reply(200, orjson.dumps({"value": value, "expires_at": expires_at}))

    def list_sessions(self, request: SimRequest) -> Reply:
        return Reply(200, orjson.dumps([record.as_json() for record in self.sessions]))

    async def echo(self, socket: SimSocket, out: Out, context: Context) -> None:
        """Every message straight back, text or binary (byte-exactness and latency tests)."""
        while True:
            await out.send(await socket.recv())

    async def flood(self, socket: SimSocket, out: Out, context: Context) -> None:
        """N binary messages as fast as the socket takes them, then wait for the close."""
        size = max(8, number(context.directives, "size", 65536))
        for index in range(number(context.directives, "flood")):
            await out.send(index.to_bytes(8, "big") + bytes(size - 8))
        while True:
            await socket.recv()
