"""The simulator's WebSocket side: xAI's realtime, Responses WebSocket mode, TTS and STT.

The HTTP server hands over a connection whose request asked for an upgrade; the websockets
library's Sans-I/O `ServerProtocol` then speaks the protocol on the same socket. Each path
plays a deterministic script:

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
import base64
import binascii
import contextlib
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs

import orjson
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from grok_proxy.simulator import catalog, tools
from grok_proxy.simulator.core import (
    Kit,
    number,
    parse_directives,
    reply_pieces,
    split_model,
    text_pieces,
    xai_error,
)
from grok_proxy.simulator.responses import model_response, response_events, response_turn
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest
from grok_proxy.simulator.xai import Simulator

log = logging.getLogger("grok_proxy.simulator.realtime")
# The websockets protocol logs each connection at info and every frame at debug: too chatty.
PROTOCOL_LOG = logging.getLogger("grok_proxy.simulator.realtime.protocol")
PROTOCOL_LOG.setLevel(logging.WARNING)

JSON = dict[str, Any]
CLIENT_SECRET_PREFIX = "xai-client-secret."  # noqa: S105 - a protocol name, not a secret
# 20 ms of 24 kHz 16-bit mono PCM: one audio delta per word.
AUDIO_CHUNK = 960


class Closed(Exception):
    """The client closed the session (or the connection was lost)."""


def audio_for(text: str) -> bytes:
    """Deterministic stand-in audio for a piece of text."""
    return (hashlib.sha256(text.encode()).digest() * (AUDIO_CHUNK // 32 + 1))[:AUDIO_CHUNK]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class SessionRecord:
    """What one session received and how it ended, for /_sim/websockets."""

    path: str
    query: str
    subprotocol: str | None
    received: deque[JSON] = field(default_factory=lambda: deque(maxlen=1000))
    sent: int = 0
    open: bool = True
    closed_by: str | None = None
    close_code: int | None = None
    close_reason: str | None = None

    def as_json(self) -> JSON:
        return {
            "path": self.path,
            "query": self.query,
            "subprotocol": self.subprotocol,
            "received": list(self.received),
            "sent": self.sent,
            "open": self.open,
            "closed_by": self.closed_by,
            "close_code": self.close_code,
            "close_reason": self.close_reason,
        }


class SimSocket(asyncio.Protocol):
    """One WebSocket connection on the Sans-I/O protocol: a message queue and send methods."""

    def __init__(self, realtime: Realtime, transport: asyncio.Transport) -> None:
        self.realtime = realtime
        self.transport: asyncio.Transport | None = transport
        self.conn = ServerProtocol(max_size=None, logger=PROTOCOL_LOG)
        self.incoming: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.fragments: list[bytes] = []
        self.fragment_text = False
        self.record: SessionRecord | None = None
        self.task: asyncio.Task[None] | None = None

    # asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.process()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self.process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.record is not None and self.record.open:
            self.record.open = False
            self.record.closed_by = "lost"
            self.realtime.simulator.count("ws_connection_lost")
        self.incoming.put_nowait(None)
        if self.task is not None:
            self.task.cancel()

    # the protocol
    def process(self) -> None:
        for event in self.conn.events_received():
            if isinstance(event, Request):
                self.realtime.handshake(self, event)
            elif isinstance(event, Frame):
                self.on_frame(event)
        self.flush()

    def on_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self.fragments = [bytes(frame.data)]
            self.fragment_text = frame.opcode is Opcode.TEXT
        elif frame.opcode is Opcode.CONT:
            self.fragments.append(bytes(frame.data))
        elif frame.opcode is Opcode.CLOSE:
            record = self.record
            if record is not None and record.open:
                record.open = False
                record.closed_by = "client"
                received = self.conn.close_rcvd
                record.close_code = received.code if received else None
                record.close_reason = received.reason if received else None
                self.realtime.simulator.count("ws_client_closed")
            self.incoming.put_nowait(None)
            return
        else:
            return  # pings are answered by the protocol itself
        if not frame.fin:
            return
        data = b"".join(self.fragments)
        self.fragments = []
        if self.record is not None:
            self.record.received.append(
                {
                    "kind": "text" if self.fragment_text else "binary",
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        self.realtime.simulator.count("ws_messages_in")
        self.incoming.put_nowait(data.decode() if self.fragment_text else data)

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for chunk in self.conn.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()  # the protocol's end of stream: the closing handshake is done
                return

    # for scripts
    async def recv(self) -> str | bytes:
        message = await self.incoming.get()
        if message is None:
            self.incoming.put_nowait(None)  # every later recv() ends too
            raise Closed
        return message

    def send(self, data: str | bytes) -> None:
        if self.transport is None or self.record is None or not self.record.open:
            raise Closed
        if isinstance(data, str):
            self.conn.send_text(data.encode())
        else:
            self.conn.send_binary(data)
        self.record.sent += 1
        self.realtime.simulator.count("ws_messages_out")
        self.flush()

    def close(self, code: int, reason: str = "") -> None:
        if self.record is not None and self.record.open:
            self.record.open = False
            self.record.closed_by = "server"
            self.record.close_code = code
            self.record.close_reason = reason
            self.realtime.simulator.count("ws_server_closed")
        with contextlib.suppress(Exception):
            self.conn.send_close(code, reason)
        self.flush()
        self.incoming.put_nowait(None)


class Out:
    """A session's outgoing events with the connection's faults applied (close, stall, pace)."""

    def __init__(self, socket: SimSocket, directives: dict[str, str], default_pace: int) -> None:
        self.socket = socket
        self.directives = directives
        self.pace_seconds = number(directives, "pace", default_pace) / 1000
        self.close_code = number(directives, "close")
        self.close_after = number(directives, "after")
        self.stall_after = number(directives, "stall", -1)
        self.sent = 0

    async def send(self, event: JSON | str | bytes) -> None:
        if self.close_code and self.sent >= self.close_after:
            self.socket.close(self.close_code, "The simulator was asked to close the session.")
            raise Closed
        if self.stall_after >= 0 and self.sent >= self.stall_after:
            await asyncio.Event().wait()
        data = orjson.dumps(event).decode() if isinstance(event, dict) else event
        self.socket.send(data)
        self.sent += 1

    async def pace(self) -> None:
        if self.pace_seconds:
            await asyncio.sleep(self.pace_seconds)


def error_event(code: str, message: str) -> JSON:
    return {
        "type": "error",
        "error": {"type": "invalid_request_error", "code": code, "message": message},
    }


Script = Callable[[SimSocket, Out, "Context"], Awaitable[None]]


@dataclass
class Context:
    """What a script knows about its session."""

    path: str
    query: dict[str, list[str]]
    model: str
    directives: dict[str, str]


class Realtime:
    """The simulator's WebSocket paths, client secrets and introspection."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self.client_secrets: dict[str, float] = {}
        self.sessions: deque[SessionRecord] = deque(maxlen=500)
        self.scripts: dict[str, Script] = {
            "/v1/realtime": self.voice,
            "/v1/responses": self.responses,
            "/v1/tts": self.tts,
            "/v1/stt": self.stt,
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

    # scripts
    async def voice(self, socket: SimSocket, out: Out, context: Context) -> None:
        """The voice agent: OpenAI Realtime protocol events, as xAI serves them."""
        ids = self.simulator.next_id
        session: JSON = {
            "id": "sess_" + ids(),
            "object": "realtime.session",
            "model": context.model or "grok-voice-latest",
            "voice": "eve",
            "modalities": ["text", "audio"],
            "instructions": "",
            "turn_detection": {"type": "server_vad"},
            "tools": [],
        }
        await out.send(
            {"type": "session.created", "event_id": "event_" + ids(), "session": session}
        )
        conversation = {"id": "conv_" + ids(), "object": "realtime.conversation"}
        await out.send({"type": "conversation.created", "conversation": conversation})
        audio = 0
        speaking_item: str | None = None
        responding: asyncio.Task[None] | None = None
        # Function outputs the caller added since the last response: the next one answers them.
        results: list[str] = []
        while True:
            event = await self.next_event(socket, out)
            if event is None:
                continue
            kind = event.get("type")
            if kind == "session.update":
                session.update(event.get("session") or {})
                await out.send({"type": "session.updated", "session": session})
            elif kind == "input_audio_buffer.append":
                try:
                    audio += len(base64.b64decode(event.get("audio", ""), validate=True))
                except (binascii.Error, TypeError):
                    await out.send(error_event("invalid_audio", "audio must be base64."))
                    continue
                if speaking_item is None:
                    speaking_item = "item_" + ids()
                    await out.send(
                        {
                            "type": "input_audio_buffer.speech_started",
                            "audio_start_ms": 0,
                            "item_id": speaking_item,
                        }
                    )
            elif kind == "input_audio_buffer.commit":
                await self.commit(out, audio, speaking_item)
                audio, speaking_item = 0, None
            elif kind == "conversation.item.create":
                item = dict(event.get("item") or {})
                item.setdefault("id", "item_" + ids())
                if item.get("type") == "function_call_output":
                    results.append(tools.text_of(item.get("output")))
                await out.send({"type": "conversation.item.added", "item": item})
            elif kind == "response.create":
                if responding is not None and not responding.done():
                    await out.send(error_event("conversation_already_has_active_response", "Busy."))
                    continue
                options = event.get("response") or {}
                answered, results = results, []
                responding = asyncio.ensure_future(self.respond(out, session, options, answered))
            elif kind == "response.cancel":
                if responding is not None and not responding.done():
                    responding.cancel()
            else:
                await out.send(error_event("unknown_event", f"Unknown event type {kind!r}."))

    @staticmethod
    async def commit(out: Out, audio: int, item_id: str | None) -> None:
        """The end of the caller's turn: speech stopped, buffer committed, a user item."""
        if not audio or item_id is None:
            await out.send(error_event("input_audio_buffer_commit_empty", "The buffer is empty."))
            return
        milliseconds = audio * 1000 // 48000
        await out.send(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": milliseconds,
                "item_id": item_id,
            }
        )
        await out.send({"type": "input_audio_buffer.committed", "item_id": item_id})
        item = {
            "id": item_id,
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": f"({audio} bytes of audio)"}],
        }
        await out.send({"type": "conversation.item.added", "item": item})

    async def respond(
        self, out: Out, session: JSON, options: JSON, results: list[str] | None = None
    ) -> None:
        """One spoken answer: paced deltas, a function call when tools exist, response.done."""
        ids = self.simulator.next_id
        response_id, item_id = "resp_" + ids(), "item_" + ids()
        modalities = options.get("modalities") or session.get("modalities") or ["audio"]
        spoken = "audio" in modalities
        pieces = reply_pieces(number(out.directives, "chunks"))
        call = None
        if results:
            pieces = text_pieces(tools.result_answer("; ".join(results)))
        else:
            choice = options.get("tool_choice", session.get("tool_choice"))
            declared = options.get("tools") or session.get("tools") or []
            call = tools.choose(
                tools.responses_offered({"tools": declared}), choice, tools.responses_forced(choice)
            )
        head = {"response_id": response_id, "item_id": item_id, "output_index": 0}
        output: list[JSON] = []
        try:
            await out.send(
                {
                    "type": "response.created",
                    "response": {"id": response_id, "status": "in_progress", "output": []},
                }
            )
            for piece in pieces:
                await out.pace()
                if spoken:
                    await out.send(
                        {
                            "type": "response.output_audio.delta",
                            **head,
                            "delta": b64(audio_for(piece)),
                        }
                    )
                    await out.send(
                        {"type": "response.output_audio_transcript.delta", **head, "delta": piece}
                    )
                else:
                    await out.send({"type": "response.text.delta", **head, "delta": piece})
            text = "".join(pieces)
            if spoken:
                await out.send({"type": "response.output_audio.done", **head})
                await out.send(
                    {"type": "response.output_audio_transcript.done", **head, "transcript": text}
                )
            else:
                await out.send({"type": "response.text.done", **head, "text": text})
            output.append({"id": item_id, "type": "message", "role": "assistant", "text": text})
            if call is not None:
                item = {
                    "id": "item_" + ids(),
                    "type": "function_call",
                    "call_id": "call_" + ids(),
                    "name": call.name,
                    "arguments": call.arguments_json,
                }
                await out.send(
                    {
                        "type": "response.function_call_arguments.done",
                        "response_id": response_id,
                        "item_id": item["id"],
                        "output_index": 1,
                        "call_id": item["call_id"],
                        "name": call.name,
                        "arguments": item["arguments"],
                    }
                )
                output.append(item)
            status = "completed"
        except asyncio.CancelledError:
            status = "cancelled"
        usage = {"input_tokens": 10, "output_tokens": len(pieces), "total_tokens": 10 + len(pieces)}
        with contextlib.suppress(Closed):
            await out.send(
                {
                    "type": "response.done",
                    "response": {
                        "id": response_id,
                        "status": status,
                        "output": output,
                        "usage": usage,
                    },
                }
            )

    async def responses(self, socket: SimSocket, out: Out, context: Context) -> None:
        """Responses WebSocket mode: each `response.create` streams the SSE events as messages."""
        remembered: set[str] = set()
        while True:
            event = await self.next_event(socket, out)
            if event is None:
                continue
            if event.get("type") != "response.create":
                await out.send(error_event("unknown_event", "Send response.create events."))
                continue
            body = {k: v for k, v in event.items() if k != "type"}
            if not isinstance(body.get("input"), str | list):
                await out.send(error_event("missing_required_parameter", "input is required."))
                continue
            previous = body.get("previous_response_id")
            if (
                previous is not None
                and previous not in remembered
                and previous not in self.simulator.responses.stored
            ):
                await out.send(
                    error_event(
                        "previous_response_not_found",
                        f"Previous response with id '{previous}' not found.",
                    )
                )
                continue
            model, directives = split_model(str(body.get("model") or context.model or "grok-4"))
            # The same response and events as the SSE stream of POST /v1/responses.
            turn = response_turn(body, model, directives)
            response_id = "resp_" + self.simulator.next_id()
            final = model_response(response_id, model, body, turn, directives)
            final["previous_response_id"] = previous
            events, _ = response_events(final, turn)
            for raw in events:
                data = raw.split(b"\ndata: ", 1)[1].strip()
                await out.pace()
                await out.send(cast(JSON, orjson.loads(data)))
            remembered.add(response_id)
            if body.get("store", True):
                self.simulator.responses.stored[response_id] = final

    async def tts(self, socket: SimSocket, out: Out, context: Context) -> None:
        """Streaming TTS: an audio delta per word of text; audio.done after text.done."""
        while True:
            event = await self.next_event(socket, out)
            if event is None:
                continue
            kind = event.get("type")
            if kind == "text.delta":
                for word in str(event.get("delta", "")).split():
                    await out.pace()
                    await out.send({"type": "audio.delta", "delta": b64(audio_for(word))})
            elif kind == "text.done":
                await out.send({"type": "audio.done"})
            else:
                await out.send(error_event("unknown_event", f"Unknown event type {kind!r}."))

    async def stt(self, socket: SimSocket, out: Out, context: Context) -> None:
        """Streaming STT: a growing partial transcript per audio frame, then the final one."""
        words = catalog.REPLY_TEXT.split()
        frames = heard = 0
        while True:
            message = await socket.recv()
            if isinstance(message, bytes):
                frames += 1
                heard += len(message)
                text = " ".join(words[: min(frames, len(words))])
                await out.pace()
                await out.send({"type": "transcript.partial", "text": text})
                continue
            try:
                event = orjson.loads(message)
            except orjson.JSONDecodeError:
                await out.send(error_event("invalid_json", "Messages must be JSON objects."))
                continue
            if isinstance(event, dict) and event.get("type") == "audio.done":
                text = " ".join(words[: min(frames, len(words))])
                await out.send(
                    {
                        "type": "transcript.done",
                        "text": text,
                        "audio_bytes": heard,
                        "frames": frames,
                    }
                )
                frames = heard = 0
            else:
                await out.send(error_event("unknown_event", "Send binary audio or audio.done."))

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

    async def next_event(self, socket: SimSocket, out: Out) -> JSON | None:
        """The next client message as a JSON object, or None after answering a bad one."""
        message = await socket.recv()
        if isinstance(message, bytes):
            await out.send(error_event("invalid_message", "This path takes JSON text messages."))
            return None
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError:
            await out.send(error_event("invalid_json", "Messages must be JSON objects."))
            return None
        if not isinstance(event, dict):
            await out.send(error_event("invalid_json", "Messages must be JSON objects."))
            return None
        return event
