"""Which API paths hold per-member state, and what a shared proxy must do with each.

Paths are the part below /api/v1, without the leading slash, percent-decoded. A path that
is not known here is refused in shared mode: a new stateful route at xAI must not leak one
member's objects to another before this table learns about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    """What the HTTP layer does with a request to this path."""

    OPEN = "open"  # needs no key at all (health)
    STATELESS = "stateless"  # forwarded; nothing is stored upstream
    CREATE = "create"  # forwarded; ids in a successful answer become the member's objects
    OBJECT = "object"  # forwarded only when the member owns the object, else 404
    LIST = "list"  # forwarded; the answer's `data` is cut to the member's objects
    API_KEY = "api_key"  # answered by the proxy: the member's own view of its key
    REFUSE = "refuse"  # not known to be safe to share: 403


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    kind: str | None = None
    object_id: str | None = None


# Routes that keep nothing for later, with or without an id after them.
STATELESS = frozenset(
    {
        "chat/completions",
        "completions",
        "embeddings",
        "tokenize-text",
        "tokenize",
        "messages",
        "messages/count_tokens",
        "images/generate",
        "vision/analyze",
        # One-shot speech: nothing kept.
        "tts",
        "stt",
    }
)
CATALOGUES = frozenset(
    {
        "models",
        "language-models",
        "image-generation-models",
        "embedding-models",
        "video-generation-models",
        "tts/voices",
    }
)
# POST routes whose answer names a new object, and the field that names it.
CREATES = {
    "responses": ("response", ("id",)),
    "files": ("file", ("id",)),
    "batches": ("batch", ("id", "batch_id")),
    "videos/generations": ("video", ("request_id",)),
    "videos/edits": ("video", ("request_id",)),
    "videos/extensions": ("video", ("request_id",)),
    "images/generations": ("image", ("request_id",)),
    "images/edits": ("image", ("request_id",)),
    # Only with "deferred": true does the answer name an object (see Team.creates).
    "chat/completions": ("deferred", ("request_id",)),
    # An ephemeral token for a browser's WebSocket: its sessions are the minting member's.
    # Stored hashed (Team.claim), as access keys are.
    "realtime/client_secrets": ("client_secret", ("value",)),
}
LISTS = {"files": "file", "batches": "batch"}
# Routes whose body names the model used; without one, xAI (or the proxy's own routes)
# picks a default, which a member limited to some models must not get unchecked.
MODEL_ROUTES = frozenset(
    {
        "chat/completions",
        "completions",
        "responses",
        "messages",
        "messages/count_tokens",
        "embeddings",
        "tokenize-text",
        "images/generations",
        "images/generate",
        "images/edits",
        "vision/analyze",
        "videos/generations",
        "videos/edits",
        "videos/extensions",
        # Not `tts` (nor `stt`): xAI's documented speech bodies name no model, so a model
        # allow-list has nothing to decide on there; the `routes` limit governs them.
    }
)
# First segment(s) of object routes -> kind; the id is the next segment.
OBJECT_PREFIXES = {
    "responses": "response",
    "files": "file",
    "batches": "batch",
    "chat/deferred-completion": "deferred",
    "videos": "video",
    "images": "image",
}
# Sub-resources of an object that belong to it.
OBJECT_TAILS = {"file": {"content"}, "batch": {"requests", "results"}}


def classify(method: str, route: str) -> Decision:
    """What a shared proxy does with `method` on `route` (below /api/v1, no leading slash)."""
    segments = route.split("/")
    if any(segment in {"", ".", ".."} for segment in segments):
        return Decision(Action.REFUSE)
    if route == "health":
        return Decision(Action.OPEN)
    if route == "api-key":
        return Decision(Action.API_KEY if method == "GET" else Action.REFUSE)
    if method == "POST" and route in CREATES:
        return Decision(Action.CREATE, CREATES[route][0])
    if route in STATELESS:
        return Decision(Action.STATELESS)
    if segments[0] in CATALOGUES and len(segments) <= 2 and method == "GET":
        return Decision(Action.STATELESS)
    if method == "GET" and route in LISTS:
        return Decision(Action.LIST, LISTS[route])
    return _object(segments)


def _object(segments: list[str]) -> Decision:
    for prefix, kind in OBJECT_PREFIXES.items():
        head = prefix.split("/")
        if segments[: len(head)] != head or len(segments) <= len(head):
            continue
        object_id, *tail = segments[len(head) :]
        if kind == "batch":
            object_id = object_id.split(":", 1)[0]  # POST /batches/{id}:cancel
        if len(tail) > 1 or (tail and tail[0] not in OBJECT_TAILS.get(kind, set())):
            break
        return Decision(Action.OBJECT, kind, object_id)
    return Decision(Action.REFUSE)


# Request-body fields that name an existing object: reading through them needs ownership.
REFERENCES = {
    "previous_response_id": "response",
    "file_id": "file",
    "input_file_id": "file",
}


def references(data: object) -> list[tuple[str, str]]:
    """Every (kind, id) a JSON request body refers to, at any depth."""
    found: list[tuple[str, str]] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for name, value in item.items():
                if name in REFERENCES and isinstance(value, str):
                    found.append((REFERENCES[name], value))
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(value for value in item if isinstance(value, dict | list))
    return found
