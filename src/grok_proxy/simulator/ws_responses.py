"""`/v1/responses` over WebSocket: each `response.create` streams the SSE events as messages."""

from __future__ import annotations

from typing import cast

import orjson

from grok_proxy.simulator.core import split_model
from grok_proxy.simulator.responses import model_response, response_events, response_turn
from grok_proxy.simulator.ws_wire import (
    JSON,
    Context,
    Out,
    SimSocket,
    error_event,
    next_event,
)
from grok_proxy.simulator.xai import Simulator


async def responses(simulator: Simulator, socket: SimSocket, out: Out, context: Context) -> None:
    """Responses WebSocket mode: each `response.create` streams the SSE events as messages."""
    remembered: set[str] = set()
    while True:
        event = await next_event(socket, out)
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
            and previous not in simulator.responses.stored
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
        response_id = "resp_" + simulator.next_id()
        final = model_response(response_id, model, body, turn, directives)
        final["previous_response_id"] = previous
        events, _ = response_events(final, turn)
        for raw in events:
            data = raw.split(b"\ndata: ", 1)[1].strip()
            await out.pace()
            await out.send(cast(JSON, orjson.loads(data)))
        remembered.add(response_id)
        if body.get("store", True):
            simulator.responses.stored[response_id] = final
