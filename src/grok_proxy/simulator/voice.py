"""`/v1/realtime`: the voice agent's script, OpenAI Realtime protocol events as xAI serves them."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib

from grok_proxy.simulator import tools
from grok_proxy.simulator.core import number, reply_pieces, text_pieces
from grok_proxy.simulator.ws_wire import (
    JSON,
    Closed,
    Context,
    Out,
    SimSocket,
    audio_for,
    b64,
    error_event,
    next_event,
)
from grok_proxy.simulator.xai import Simulator


async def voice(simulator: Simulator, socket: SimSocket, out: Out, context: Context) -> None:
    """The voice agent: OpenAI Realtime protocol events, as xAI serves them."""
    ids = simulator.next_id
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
    await out.send({"type": "session.created", "event_id": "event_" + ids(), "session": session})
    conversation = {"id": "conv_" + ids(), "object": "realtime.conversation"}
    await out.send({"type": "conversation.created", "conversation": conversation})
    audio = 0
    speaking_item: str | None = None
    responding: asyncio.Task[None] | None = None
    # Function outputs the caller added since the last response: the next one answers them.
    results: list[str] = []
    while True:
        event = await next_event(socket, out)
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
            await commit(out, audio, speaking_item)
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
            responding = asyncio.ensure_future(respond(simulator, out, session, options, answered))
        elif kind == "response.cancel":
            if responding is not None and not responding.done():
                responding.cancel()
        else:
            await out.send(error_event("unknown_event", f"Unknown event type {kind!r}."))


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
    simulator: Simulator,
    out: Out,
    session: JSON,
    options: JSON,
    results: list[str] | None = None,
) -> None:
    """One spoken answer: paced deltas, a function call when tools exist, response.done."""
    ids = simulator.next_id
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
