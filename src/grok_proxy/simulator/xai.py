"""The offline stand-in for api.x.ai: xAI's shapes, deterministic answers, injectable faults.

Faults ride in the model name, so they pass through the proxy untouched:
``grok-4@status=429,retry_after=2`` or ``grok-4@chunks=50,pace=20,cut=10``.

=============  ==============================================================
directive      effect
=============  ==============================================================
status=N       answer HTTP N with an xAI-shaped error body
retry_after=S  with status: send `Retry-After: S`
body=KIND      with status (or alone, as 200): `html` page, `malformed` JSON, `empty`
delay=MS       wait MS milliseconds before the response headers
chunks=N       stream N content chunks (default: one per word of the reply)
pace=MS        wait MS milliseconds between stream events
cut=K          drop the connection after K content chunks
stall=K        stop sending after K content chunks, and never finish
=============  ==============================================================

Tests look inside through ``GET /_sim/requests`` (what arrived), ``GET /_sim/stats``
(counters, including streams the client cancelled) and ``POST /_sim/reset``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson

from grok_proxy.simulator.server import Cut, Outcome, Reply, SimRequest, Stream

REPLY_TEXT = "Hello! This is the grok-proxy simulator standing in for xAI."
FINGERPRINT = "fp_sim0001"

# xAI's error `code` strings are gRPC status descriptions.
ERROR_CODES = {
    400: "Client specified an invalid argument",
    401: "The request does not have valid authentication credentials",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
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

HTML_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"


def xai_error(
    status: int, message: str | None = None, headers: list[tuple[str, str]] | None = None
) -> Reply:
    """An error in xAI's observed shape: `{"code": ..., "error": ...}`."""
    body = {
        "code": ERROR_CODES.get(status, "Unknown error"),
        "error": message or ERROR_TEXTS.get(status, f"The simulator answered {status}."),
    }
    return Reply(status, orjson.dumps(body), headers=headers or [])


def parse_directives(model: str) -> tuple[str, dict[str, str]]:
    """`grok-4@pace=20,cut=3` -> (`grok-4`, {"pace": "20", "cut": "3"})."""
    name, _, spec = model.partition("@")
    directives = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key:
            directives[key.strip()] = value.strip()
    return name, directives


def _int(directives: dict[str, str], key: str, default: int = 0) -> int:
    try:
        return int(directives.get(key, default))
    except ValueError:
        return default


class Simulator:
    """Answers xAI's routes and remembers what it was asked."""

    def __init__(self) -> None:
        self.requests: deque[SimRequest] = deque(maxlen=2000)
        self.stats: dict[str, int] = {}
        self.sequence = 0
        self.routes: dict[tuple[str, str], Callable[[SimRequest], Outcome | Awaitable[Outcome]]] = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("GET", "/_sim/requests"): self.list_requests,
            ("GET", "/_sim/stats"): self.get_stats,
            ("POST", "/_sim/reset"): self.reset,
        }
        self.reset(None)

    # plumbing
    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def count_cancel(self, streaming: bool) -> None:
        self.count("streams_cancelled" if streaming else "requests_cancelled")

    def handle(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        route = self.routes.get((request.method, request.path))
        if not request.path.startswith("/_sim/"):
            self.requests.append(request)
            self.count("requests")
        if route is None:
            return xai_error(404, f"No route {request.method} {request.path} in the simulator.")
        if not request.path.startswith("/_sim/"):
            refused = self.check_key(request)
            if refused is not None:
                return refused
        return route(request)

    @staticmethod
    def check_key(request: SimRequest) -> Reply | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return xai_error(401)
        key = auth[7:].strip()
        if "invalid" in key:
            shown = f"{key[:2]}***{key[-2:]}"
            return xai_error(
                400,
                f"Incorrect API key provided: {shown}. You can obtain an API key from "
                "https://console.x.ai.",
            )
        return None

    def next_id(self) -> str:
        self.sequence += 1
        return f"00000000-0000-4000-8000-{self.sequence:012d}_us-east-1"

    # introspection
    def list_requests(self, request: SimRequest) -> Reply:
        items = [
            {
                "method": r.method,
                "path": r.path,
                "query": r.query,
                "headers": r.headers,
                "body": r.body.decode("utf-8", "replace"),
            }
            for r in self.requests
        ]
        return Reply(200, orjson.dumps(items))

    def get_stats(self, request: SimRequest) -> Reply:
        return Reply(200, orjson.dumps(self.stats))

    def reset(self, request: SimRequest | None) -> Reply:
        self.requests.clear()
        self.stats = {
            "requests": 0,
            "streams_started": 0,
            "streams_completed": 0,
            "streams_cancelled": 0,
            "streams_cut": 0,
            "requests_cancelled": 0,
        }
        return Reply(200, b'{"reset":true}')

    # faults shared by every model-bearing route
    def faults(
        self, directives: dict[str, str], answer: Callable[[], Outcome]
    ) -> Outcome | Awaitable[Outcome]:
        """Apply status/body/delay directives around a route's normal answer."""
        status = _int(directives, "status")
        body_kind = directives.get("body")
        if status or body_kind:
            reply = self.faulty_reply(status or 200, body_kind, directives)
            answer = lambda: reply  # noqa: E731
        delay = _int(directives, "delay")
        if delay <= 0:
            return answer()

        async def later() -> Outcome:
            await asyncio.sleep(delay / 1000)
            return answer()

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

    # chat completions
    def chat_completions(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return xai_error(400, "Failed to parse the request body as JSON.")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return xai_error(422, "Failed to deserialize the JSON body: missing field `model`.")
        model, directives = parse_directives(body["model"])
        if not model.startswith("grok") and model not in {"latest"}:
            return xai_error(
                404,
                f"The model {model} does not exist or your team does not have access to it.",
            )
        chunks = self.reply_chunks(directives)
        usage = self.usage(body, len(chunks))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self.chat_events(model, chunks, usage if include_usage else None, directives)
            return self.faults(directives, lambda: Stream(events))
        return self.faults(directives, lambda: Reply(200, self.chat_body(model, chunks, usage)))

    @staticmethod
    def reply_chunks(directives: dict[str, str]) -> list[str]:
        count = _int(directives, "chunks")
        if count > 0:
            return [f"tok{i} " for i in range(count)]
        words = REPLY_TEXT.split(" ")
        return [word + " " for word in words[:-1]] + [words[-1]]

    @staticmethod
    def usage(body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        prompt_tokens = max(1, len(orjson.dumps(body.get("messages", []))) // 4)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {
                "text_tokens": prompt_tokens,
                "audio_tokens": 0,
                "image_tokens": 0,
                "cached_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
            "num_sources_used": 0,
        }

    def chat_body(self, model: str, chunks: list[str], usage: dict[str, Any]) -> bytes:
        return orjson.dumps(
            {
                "id": self.next_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "".join(chunks),
                            "refusal": None,
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
                "system_fingerprint": FINGERPRINT,
            }
        )

    async def chat_events(
        self,
        model: str,
        chunks: list[str],
        usage: dict[str, Any] | None,
        directives: dict[str, str],
    ) -> AsyncIterator[bytes]:
        """xAI's framing: role chunk, content chunks, finish chunk, usage chunk, [DONE]."""
        self.count("streams_started")
        head = {
            "id": self.next_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        pace = _int(directives, "pace") / 1000
        cut = _int(directives, "cut", -1)
        stall = _int(directives, "stall", -1)

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {**head, "choices": choices, **extra, "system_fingerprint": FINGERPRINT}
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        yield event([{"index": 0, "delta": {"role": "assistant"}}])
        for i, text in enumerate(chunks):
            if pace:
                await asyncio.sleep(pace)
            if i == cut:
                self.count("streams_cut")
                raise Cut
            if i == stall:
                await asyncio.Event().wait()
            yield event([{"index": 0, "delta": {"content": text}}])
        yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"
        self.count("streams_completed")
