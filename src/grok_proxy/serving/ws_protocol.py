"""uvicorn's WebSocket protocol, adjusted for a relay: shutdown waits, handshakes stay unlogged,
every head is answered and none is waited for without end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from grok_proxy.config import get_settings
from grok_proxy.serving.http_protocol import REFUSALS, error_response, limits

# Warnings and errors only: at debug level the websockets library would log every
# handshake header (keys, client secrets) and frame, and at info uvicorn logs each session
# a second time (grok-proxy writes its own access line).
QUIET = logging.getLogger("grok_proxy.websocket.server")
QUIET.setLevel(logging.WARNING)


class RelayWebSocketProtocol(WebSocketsSansIOProtocol):
    """Sessions live through a shutdown until lifecycle.Drain ends them with 1001.

    uvicorn's own protocol closes every open session with 1012 the moment shutdown starts,
    which would cut voice sessions that the drain grace is meant to let finish.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.logger = QUIET
        self.conn.logger = QUIET
        self.conn.debug = False
        self.deadline: asyncio.TimerHandle | None = None

    # The handshake's deadline. The HTTP protocol's HEADERS_TIMEOUT stops at the upgrade; this
    # one runs on until the application accepts or refuses the session, so a head nobody
    # answers cannot hold a connection (and a MAX_CONNECTIONS slot) forever.

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.deadline = self.loop.call_later(limits().headers_timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        self.deadline = None
        if self.handshake_complete or self.transport.is_closing():
            return
        if self.handshake_initiated:
            # The application is opening the upstream session: it answers within the
            # upstream's connect timeout; past that (and a little slack) it never will.
            grace = get_settings().upstream.connect_timeout + 1.0
            self.deadline = self.loop.call_later(grace, self._answer_overdue)
            return
        self._refuse(
            408,
            "The WebSocket handshake did not arrive within "
            f"{limits().headers_timeout:g} seconds (setting HEADERS_TIMEOUT).",
            "request_timeout",
        )

    def _answer_overdue(self) -> None:
        self.deadline = None
        if not self.handshake_complete and not self.transport.is_closing():
            self._refuse(504, "The upstream WebSocket handshake took too long.", "upstream_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer the handshake with an error envelope and close the connection."""
        REFUSALS.note("ws-head", "WebSocket handshake refused with %s: %s", status, message)
        self.handshake_complete = True
        self.close_sent = True
        self.transport.write(error_response(status, message, code))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (
            not self.handshake_initiated
            and not self.handshake_complete
            and self.conn.handshake_exc is not None
        ):
            # websockets could not parse the head (a header line over 8 KiB, over 128
            # headers): it stops reading but answers nothing, and uvicorn only looks at
            # frame errors. Answer 400 and close, as for any other unusable request.
            self._refuse(
                400,
                "The WebSocket handshake request could not be parsed (a header line over "
                "8192 bytes, or more than 128 headers).",
                "invalid_handshake",
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.handshake_complete and not self.close_sent and self.conn.close_rcvd is None:
            # Gone without a close frame. uvicorn would report 1005 (as for an empty close
            # frame); 1006 lets the relay tell the upstream the caller went away (1001).
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # A refusal is a complete answer to the handshake; without this uvicorn would log
            # "returned without completing handshake" for every refused session.
            self.handshake_complete = True

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and not self.disconnected:
            # The relay registered this session with the drain, which closes it with 1001
            # shortly before uvicorn's graceful-shutdown timeout runs out.
            return
        super().shutdown()
