"""The shape builders' old names, kept so front-ends written before the split (gRPC, WebSocket)
merge unchanged; new code imports from the area modules (chat, responses, messages...)."""

from __future__ import annotations

from typing import Any

from grok_proxy.simulator import catalog
from grok_proxy.simulator.account import api_key_info
from grok_proxy.simulator.chat import Turn, text_completion, text_completion_events
from grok_proxy.simulator.chat import chat_completion as _chat_completion
from grok_proxy.simulator.chat import chat_events as _chat_events
from grok_proxy.simulator.chat import usage as chat_usage
from grok_proxy.simulator.core import data_event, named_event
from grok_proxy.simulator.core import reply_pieces as words
from grok_proxy.simulator.embeddings import embeddings, tokens
from grok_proxy.simulator.media import TINY_JPEG, images

JSON = dict[str, Any]
REPLY_TEXT = catalog.REPLY_TEXT
FINGERPRINT = catalog.FINGERPRINT
MODELS: list[JSON] = catalog.listing()
known_model = catalog.known_model

__all__ = [
    "FINGERPRINT",
    "JSON",
    "MODELS",
    "REPLY_TEXT",
    "TINY_JPEG",
    "api_key_info",
    "chat_completion",
    "chat_events",
    "chat_usage",
    "data_event",
    "embeddings",
    "images",
    "known_model",
    "named_event",
    "text_completion",
    "text_completion_events",
    "tokens",
    "words",
]


def chat_completion(response_id: str, model: str, pieces: list[str], usage: JSON) -> JSON:
    """A plain text chat completion made of `pieces`."""
    return _chat_completion(response_id, model, Turn(pieces, []), usage)


def chat_events(response_id: str, model: str, pieces: list[str], usage: JSON | None) -> list[bytes]:
    """xAI's chunk stream for a plain text answer made of `pieces`."""
    return _chat_events(response_id, model, Turn(pieces, []), usage)
