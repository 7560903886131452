"""uvicorn's WebSocket protocol, adjusted for a relay: shutdown waits, handshakes stay unlogged."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

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

    def connection_lost(self, exc: Exception | None) -> None:
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
