"""`/v1/tts` and `/v1/stt`: streaming speech synthesis and transcription scripts."""

from __future__ import annotations

import orjson

from grok_proxy.simulator import catalog
from grok_proxy.simulator.ws_wire import (
    Context,
    Out,
    SimSocket,
    audio_for,
    b64,
    error_event,
    next_event,
)


async def tts(socket: SimSocket, out: Out, context: Context) -> None:
    """Streaming TTS: an audio delta per word of text; audio.done after text.done."""
    while True:
        event = await next_event(socket, out)
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


async def stt(socket: SimSocket, out: Out, context: Context) -> None:
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
