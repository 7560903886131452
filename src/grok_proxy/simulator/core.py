"""What every API area of the simulator shares: errors, directives, faults, streams and framing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import orjson

from grok_proxy.simulator import catalog
from grok_proxy.simulator.wire import Cut, Outcome, Reply, Reset, SimRequest, Stream

JSON = dict[str, Any]
Parsed = tuple[JSON, str, dict[str, str]]

# xAI's error `code` strings are gRPC status descriptions.
ERROR_CODES = {
    400: "Client specified an invalid argument",
    401: "The request does not have valid authentication credentials",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    410: "The requested resource is no longer available",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Client specified an invalid argument",
    429: "Some resource has been exhausted",
    500: "Internal error",
    502: "Bad gateway",
    503: "The service is currently unavailable",
    504: "Deadline expired before operation could complete",
}

ERROR_TEXTS = {
    401: "No API key provided. Set the Authorization header to `Bearer <your key>`.",
    403: "Your team does not have permission to use this endpoint.",
    429: "Your team has reached its requests per second limit for this model.",
    500: "The simulator was asked to fail with an internal error.",
    502: "The simulator was asked to fail as a bad gateway.",
    503: "The service is temporarily overloaded; try again shortly.",
    504: "The simulator was asked to time out.",
}

REPLY_PAD = "All work and no play makes a very large answer. "
HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"

# Ways to frame a stream on the wire (the `frame=` directive, joined with `+`).
FRAMINGS = {"lf", "crlf", "split", "batch", "comments", "multiline"}
BATCH_SIZE = 3


def xai_error(
    status: int, message: str | None = None, headers: list[tuple[str, str]] | None = None
) -> Reply:
    """An error in xAI's observed shape: `{"code": ..., "error": ...}`."""
    body = {
        "code": ERROR_CODES.get(status, "Unknown error"),
        "error": message or ERROR_TEXTS.get(status, f"The simulator answered {status}."),
    }
    return Reply(status, orjson.dumps(body), headers=headers or [])


def missing_field(name: str) -> Reply:
    """xAI's 422 for a body without a required field."""
    return xai_error(
        422, f"Failed to deserialize the JSON body into the target type: missing field `{name}`"
    )


def ok(payload: Any, status: int = 200) -> Reply:
    """A JSON answer."""
    return Reply(status, orjson.dumps(payload))


def parse_directives(spec: str) -> dict[str, str]:
    """`pace=20,cut=3` -> {"pace": "20", "cut": "3"}."""
    directives = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key:
            directives[key.strip()] = value.strip()
    return directives


def split_model(model: str) -> tuple[str, dict[str, str]]:
    """`grok-4@pace=20` -> (`grok-4`, {"pace": "20"})."""
    name, _, spec = model.partition("@")
    return name, parse_directives(spec)


def number(directives: dict[str, str], key: str, default: int = 0) -> int:
    """A directive's integer value, or `default` when absent or not a number."""
    try:
        return int(directives.get(key, default))
    except ValueError:
        return default


def data_event(payload: JSON) -> bytes:
    """One unnamed SSE event."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def named_event(name: str, payload: JSON) -> bytes:
    """One SSE event with an `event:` line."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def now() -> int:
    """Unix seconds, as xAI's `created` fields."""
    return int(time.time())


def reply_pieces(count: int) -> list[str]:
    """The pieces of the default answer: `count` numbered tokens, or the text word by word."""
    if count > 0:
        return [f"tok{i} " for i in range(count)]
    return text_pieces(catalog.REPLY_TEXT)


def text_pieces(text: str) -> list[str]:
    """`text` cut into word-sized pieces that join back to it exactly."""
    parts = text.split(" ")
    return [word + " " for word in parts[:-1]] + [parts[-1]]


def chunked(text: str, count: int) -> list[str]:
    """`text` in `count` pieces (word pieces when count is 0) that join back to it."""
    if count <= 0:
        return text_pieces(text)
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class Kit:
    """The state and helpers every API area shares: ids, stored objects, faults, streams."""

    def __init__(self) -> None:
        self.requests: deque[SimRequest] = deque(maxlen=2000)
        self.streams: deque[bytearray] = deque(maxlen=50)
        self.stats: dict[str, int] = {}
        self.sequence = 0
        self.failures: dict[str, int] = {}

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def count_cancel(self, streaming: bool) -> None:
        self.count("streams_cancelled" if streaming else "requests_cancelled")

    def next_id(self) -> str:
        self.sequence += 1
        return f"00000000-0000-4000-8000-{self.sequence:012d}"

    def clear(self) -> None:
        self.requests.clear()
        self.streams.clear()
        self.failures.clear()
        self.stats = {
            "requests": 0,
            "streams_started": 0,
            "streams_completed": 0,
            "streams_cancelled": 0,
            "streams_cut": 0,
            "requests_cancelled": 0,
        }

    # bodies
    @staticmethod
    def json_body(request: SimRequest) -> JSON | Reply:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return xai_error(400, "Failed to parse the request body as JSON.")
        if not isinstance(body, dict):
            return xai_error(422, "Failed to deserialize the JSON body: expected an object.")
        return body

    @staticmethod
    def model_of(
        body: JSON, required: bool = True, default: str = catalog.DEFAULT_CHAT_MODEL
    ) -> tuple[str, dict[str, str]] | Reply:
        model = body.get("model")
        if not isinstance(model, str):
            return missing_field("model") if required else (default, {})
        name, directives = split_model(model)
        if not catalog.known_model(name):
            return xai_error(
                404, f"The model {name} does not exist or your team does not have access to it."
            )
        return name, directives

    def parse(
        self,
        request: SimRequest,
        *fields: str,
        model_required: bool = True,
        default_model: str = catalog.DEFAULT_CHAT_MODEL,
    ) -> Parsed | Reply:
        """The JSON body, its model and fault directives, or xAI's error for a bad body."""
        body = self.json_body(request)
        if isinstance(body, Reply):
            return body
        for field in fields:
            if field not in body:
                return missing_field(field)
        found = self.model_of(body, required=model_required, default=default_model)
        if isinstance(found, Reply):
            return found
        return body, *found

    # faults shared by every route
    def answer(
        self, directives: dict[str, str], normal: Callable[[], Outcome]
    ) -> Outcome | Awaitable[Outcome]:
        """The normal answer, or the fault the directives ask for, after any delay."""
        if "reset" in directives:
            return Reset()
        status = number(directives, "status")
        body_kind = directives.get("body")
        if "fail_first" in directives:
            spec = ",".join(f"{k}={v}" for k, v in sorted(directives.items()))
            self.failures[spec] = self.failures.get(spec, 0) + 1
            if self.failures[spec] > number(directives, "fail_first"):
                status, body_kind = 0, None
        make = normal
        if status or body_kind:
            fault = self.faulty_reply(status or 200, body_kind, directives)
            make = lambda: fault  # noqa: E731
        delay = number(directives, "delay")
        if delay <= 0:
            return make()

        async def later() -> Outcome:
            await asyncio.sleep(delay / 1000)
            return make()

        return later()

    @staticmethod
    def faulty_reply(status: int, body_kind: str | None, directives: dict[str, str]) -> Reply:
        headers = []
        if "retry_after" in directives:
            headers.append(("retry-after", directives["retry_after"]))
        if body_kind == "html":
            return Reply(status, HTML_PAGE, content_type="text/html", headers=headers)
        if body_kind == "malformed":
            return Reply(status, b'{"id": "broken", "choices": [', headers=headers)
        if body_kind == "empty":
            return Reply(status, b"", headers=headers)
        return xai_error(status, headers=headers)

    def stream(self, events: list[bytes], directives: dict[str, str], head: int = 1) -> Stream:
        """Send `events`; pace/cut/stall count the pieces after the first `head` events."""
        framing = set(directives.get("frame", "lf").split("+")) & FRAMINGS
        return Stream(self.framed(self.paced(events, directives, head), framing))

    async def paced(
        self, events: list[bytes], directives: dict[str, str], head: int
    ) -> AsyncIterator[bytes]:
        self.count("streams_started")
        pace = number(directives, "pace") / 1000
        cut = number(directives, "cut", -1)
        stall = number(directives, "stall", -1)
        for index, event in enumerate(events):
            piece = index - head
            if piece >= 0:
                if pace:
                    await asyncio.sleep(pace)
                if piece == cut:
                    self.count("streams_cut")
                    raise Cut
                if piece == stall:
                    await asyncio.Event().wait()
            yield event
        self.count("streams_completed")

    async def framed(self, events: AsyncIterator[bytes], framing: set[str]) -> AsyncIterator[bytes]:
        """The events as written to the wire under `framing`; what was sent is remembered."""
        sent = bytearray()
        self.streams.append(sent)
        batch: list[bytes] = []
        if "comments" in framing:
            opening = frame(b": simulator stream opened\n\n", framing - {"comments"})
            sent += opening
            yield opening
        async for event in events:
            data = frame(event, framing)
            if "batch" in framing:
                batch.append(data)
                if len(batch) < BATCH_SIZE:
                    continue
                data, batch = b"".join(batch), []
            for write in writes(data, framing):
                sent += write
                yield write
        for write in writes(b"".join(batch), framing) if batch else []:
            sent += write
            yield write


def frame(event: bytes, framing: set[str]) -> bytes:
    """One event re-framed: multi-line data, interleaved comments, CRLF line ends."""
    if "multiline" in framing:
        event = multiline(event)
    if "comments" in framing:
        event = b": frame comment\n" + event
    if "crlf" in framing:
        event = event.replace(b"\n", b"\r\n")
    return event


def multiline(event: bytes) -> bytes:
    """A JSON `data:` line spread over several `data:` lines (clients join them with LF)."""
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data: {"):
            pretty = orjson.dumps(orjson.loads(line[6:]), option=orjson.OPT_INDENT_2)
            lines += [b"data: " + part for part in pretty.split(b"\n")]
        else:
            lines.append(line)
    return b"\n".join(lines)


def writes(data: bytes, framing: set[str]) -> Iterable[bytes]:
    """`data` as one write, or (with `split`) cut mid-line and between CR and LF."""
    if "split" not in framing or len(data) < 4:
        return [data]
    cuts = {len(data) // 2, 3}
    crlf = data.find(b"\r\n")
    if crlf > 0:
        cuts.add(crlf + 1)
    points = sorted(c for c in cuts if 0 < c < len(data))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds) if a < b]
