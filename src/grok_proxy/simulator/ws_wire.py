"""The plumbing of the simulator's WebSocket side: the socket, faults on its output, errors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from grok_proxy.simulator.core import (
    number,
)

log = logging.getLogger("grok_proxy.simulator.realtime")
# The websockets protocol logs each connection at info and every frame at debug: too chatty.
PROTOCOL_LOG = logging.getLogger("grok_proxy.simulator.realtime.protocol")
PROTOCOL_LOG.setLevel(logging.WARNING)

JSON = dict[str, Any]


class Counter(Protocol):
    def count(self, name: str) -> None: ...


class Realtime(Protocol):
    """What a socket needs of the realtime API that serves it (simulator/realtime.py)."""

    @property
    def simulator(self) -> Counter: ...

    def handshake(self, socket: SimSocket, request: Request) -> None: ...


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


@dataclass
class Context:
    """What a script knows about its session."""

    path: str
    query: dict[str, list[str]]
    model: str
    directives: dict[str, str]


async def next_event(socket: SimSocket, out: Out) -> JSON | None:
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


Script = Callable[[SimSocket, Out, Context], Awaitable[None]]
