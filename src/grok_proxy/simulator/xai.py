"""The offline stand-in for api.x.ai: xAI's shapes, deterministic answers, injectable faults.

Faults ride in the model name, so they pass through the proxy untouched:
``grok-4@status=429,retry_after=2`` or ``grok-4@chunks=50,pace=20,cut=10``.
Routes without a model take the same directives from a ``sim`` query parameter.

=============  ==============================================================
directive      effect
=============  ==============================================================
status=N       answer HTTP N with an xAI-shaped error body
retry_after=S  with status: send `Retry-After: S`
fail_first=N   with status: fail only the first N requests naming this model, then answer
reset          drop the connection as soon as the request arrives, before any header
size=N         pad a plain answer's text to about N bytes (a very large response)
body=KIND      with status (or alone, as 200): `html` page, `malformed` JSON, `empty`
delay=MS       wait MS milliseconds before the response headers
chunks=N       answer with N pieces (default: one per word of the reply)
pace=MS        wait MS milliseconds before each streamed piece
cut=K          drop the connection before piece K of a stream
stall=K        stop sending before piece K of a stream, and never finish
=============  ==============================================================

Tests look inside through ``GET /_sim/requests`` (what arrived), ``GET /_sim/stats``
(counters, including requests and streams the client cancelled) and ``POST /_sim/reset``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from grok_proxy.simulator import shapes
from grok_proxy.simulator.server import Cut, Outcome, Reply, Reset, SimRequest, Stream

JSON = dict[str, Any]
Route = Callable[[SimRequest], "Outcome | Awaitable[Outcome]"]

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

REPLY_PAD = "All work and no play makes a very large answer. "
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


def missing_field(name: str) -> Reply:
    return xai_error(
        422, f"Failed to deserialize the JSON body into the target type: missing field `{name}`"
    )


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
        self.stored: dict[str, JSON] = {}
        self.failures: dict[str, int] = {}
        self.exact: dict[tuple[str, str], Route] = {
            ("POST", "/v1/chat/completions"): self.chat_completions,
            ("POST", "/v1/completions"): self.completions,
            ("POST", "/v1/images/generations"): self.images,
            ("POST", "/v1/images/edits"): self.images,
            ("POST", "/v1/embeddings"): self.embeddings,
            ("POST", "/v1/tokenize-text"): self.tokenize,
            ("POST", "/v1/messages"): self.messages,
            ("POST", "/v1/responses"): self.responses,
            ("GET", "/v1/models"): self.list_models,
            ("GET", "/v1/language-models"): self.language_models,
            ("GET", "/v1/api-key"): self.api_key,
            ("POST", "/v1/files"): self.upload_file,
            ("GET", "/_sim/requests"): self.list_requests,
            ("GET", "/_sim/stats"): self.get_stats,
            ("POST", "/_sim/reset"): self.reset,
        }
        # Routes with an id at the end of the path.
        self.by_prefix: list[tuple[str, str, Callable[[SimRequest, str], Outcome]]] = [
            ("GET", "/v1/models/", self.retrieve_model),
            ("GET", "/v1/responses/", self.retrieve_response),
            ("DELETE", "/v1/responses/", self.delete_response),
            ("GET", "/v1/chat/deferred-completion/", self.deferred_completion),
        ]
        # Stored files, batches and videos by id, for the ownership tests of shared proxies.
        self.exact.update(
            {
                ("GET", "/v1/files"): self.list_kept,
                ("POST", "/v1/batches"): self.create_batch,
                ("GET", "/v1/batches"): self.list_kept,
                ("POST", "/v1/videos/generations"): self.create_video,
            }
        )
        self.by_prefix += [
            ("GET", "/v1/files/", self.retrieve_kept),
            ("DELETE", "/v1/files/", self.delete_kept),
            ("GET", "/v1/batches/", self.retrieve_kept),
            ("GET", "/v1/videos/", self.retrieve_kept),
        ]
        self.reset(None)

    # plumbing
    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def count_cancel(self, streaming: bool) -> None:
        self.count("streams_cancelled" if streaming else "requests_cancelled")

    def next_id(self) -> str:
        self.sequence += 1
        return f"00000000-0000-4000-8000-{self.sequence:012d}"

    def handle(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        if request.path.startswith("/_sim/"):
            route = self.exact.get((request.method, request.path))
            return route(request) if route else xai_error(404, "No such simulator control.")
        self.requests.append(request)
        self.count("requests")
        refused = self.check_key(request)
        if refused is not None:
            return refused
        # Access points put xAI's API under other bases (OpenRouter /api/v1, Cloudflare
        # /v1/<account>/<gateway>/grok/v1): answer at whatever base the route arrives.
        path = (
            request.path[request.path.rfind("/v1/") :] if "/v1/" in request.path else request.path
        )
        route = self.exact.get((request.method, path))
        if route is not None:
            return route(request)
        for method, prefix, handler in self.by_prefix:
            if request.method == method and path.startswith(prefix):
                return handler(request, path[len(prefix) :])
        return xai_error(404, f"No route {request.method} {request.path}.")

    @staticmethod
    def check_key(request: SimRequest) -> Reply | None:
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        key = key or request.headers.get("x-api-key", "").strip()
        if not key:
            return xai_error(401)
        if "invalid" in key:
            return xai_error(
                400,
                f"Incorrect API key provided: {key[:2]}***{key[-2:]}. You can obtain an API key "
                "from https://console.x.ai.",
            )
        return None

    @staticmethod
    def json_body(request: SimRequest) -> JSON | Reply:
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return xai_error(400, "Failed to parse the request body as JSON.")
        if not isinstance(body, dict):
            return xai_error(422, "Failed to deserialize the JSON body: expected an object.")
        return body

    def model_of(self, body: JSON, required: bool = True) -> tuple[str, dict[str, str]] | Reply:
        model = body.get("model")
        if not isinstance(model, str):
            return missing_field("model") if required else ("grok-4", {})
        name, directives = split_model(model)
        if not shapes.known_model(name):
            return xai_error(
                404, f"The model {name} does not exist or your team does not have access to it."
            )
        return name, directives

    def parse(
        self, request: SimRequest, *fields: str, model_required: bool = True
    ) -> tuple[JSON, str, dict[str, str]] | Reply:
        """The JSON body, its model and fault directives, or xAI's error for a bad body."""
        body = self.json_body(request)
        if isinstance(body, Reply):
            return body
        for field in fields:
            if field not in body:
                return missing_field(field)
        found = self.model_of(body, required=model_required)
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
        return Stream(self.paced(events, directives, head))

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
        self.stored.clear()
        self.failures.clear()
        self.stats = {
            "requests": 0,
            "streams_started": 0,
            "streams_completed": 0,
            "streams_cancelled": 0,
            "streams_cut": 0,
            "requests_cancelled": 0,
        }
        return Reply(200, b'{"reset":true}')

    # inference routes
    def chat_completions(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.parse(request, "messages")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        response_id = self.next_id() + "_us-east-1"
        if body.get("deferred"):
            self.stored[response_id] = {"model": model, "pending": "pending" in directives}
            return self.answer(
                directives, lambda: Reply(200, orjson.dumps({"request_id": response_id}))
            )
        pieces = shapes.words(number(directives, "chunks"))
        usage = shapes.chat_usage(body, len(pieces))
        if body.get("stream"):
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = shapes.chat_events(response_id, model, pieces, usage if wants_usage else None)
            return self.answer(directives, lambda: self.stream(events, directives))
        size = number(directives, "size")
        if size:
            pieces = [(REPLY_PAD * (size // len(REPLY_PAD) + 1))[:size]]
        completion = shapes.chat_completion(response_id, model, pieces, usage)
        return self.answer(directives, lambda: Reply(200, orjson.dumps(completion)))

    def deferred_completion(self, request: SimRequest, request_id: str) -> Outcome:
        entry = self.stored.get(request_id)
        if entry is None:
            return xai_error(404, f"No deferred request {request_id}, or it was already fetched.")
        if entry["pending"]:
            return Reply(202, b"")
        del self.stored[request_id]
        pieces = shapes.words(0)
        usage = shapes.chat_usage({}, len(pieces))
        return Reply(
            200, orjson.dumps(shapes.chat_completion(request_id, entry["model"], pieces, usage))
        )

    def completions(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.parse(request, "prompt")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        pieces = shapes.words(number(directives, "chunks"))
        response_id = self.next_id()
        if body.get("stream"):
            events = shapes.text_completion_events(response_id, model, pieces)
            return self.answer(directives, lambda: self.stream(events, directives, head=0))
        usage = shapes.chat_usage(body, len(pieces))
        completion = shapes.text_completion(response_id, model, pieces, usage)
        return self.answer(directives, lambda: Reply(200, orjson.dumps(completion)))

    def images(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.parse(request, model_required=False)
        if isinstance(parsed, Reply):
            return parsed
        body, _, directives = parsed
        if not isinstance(body.get("prompt"), str):
            return missing_field("prompt")
        for unsupported in ("size", "quality", "style"):
            if unsupported in body:
                return xai_error(400, f"Argument not supported: {unsupported}")
        count = body.get("n") or 1
        if not isinstance(count, int) or not 1 <= count <= 10:
            return xai_error(400, "n must be between 1 and 10.")
        self.sequence += 1
        answer = shapes.images(
            body["prompt"], count, body.get("response_format") or "url", self.sequence
        )
        return self.answer(directives, lambda: Reply(200, orjson.dumps(answer)))

    def embeddings(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.parse(request, "input")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        if inputs and all(isinstance(i, int) for i in inputs):
            inputs = [inputs]
        dimensions = body.get("dimensions") or 8
        answer = shapes.embeddings(
            model, inputs, dimensions, body.get("encoding_format") or "float"
        )
        return self.answer(directives, lambda: Reply(200, orjson.dumps(answer)))

    def tokenize(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.parse(request)
        if isinstance(parsed, Reply):
            return parsed
        body, _, directives = parsed
        if not isinstance(body.get("text"), str):
            return missing_field("text")
        return self.answer(
            directives, lambda: Reply(200, orjson.dumps(shapes.tokens(body["text"])))
        )

    def messages(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.parse(request, "messages", "max_tokens")
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        pieces = shapes.words(number(directives, "chunks"))
        message_id = self.next_id()
        input_tokens = max(1, len(orjson.dumps(body["messages"])) // 4)
        if body.get("stream"):
            events = shapes.anthropic_events(message_id, model, pieces, input_tokens)
            return self.answer(directives, lambda: self.stream(events, directives, head=2))
        message = shapes.anthropic_message(message_id, model, pieces, input_tokens)
        return self.answer(directives, lambda: Reply(200, orjson.dumps(message)))

    def responses(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        parsed = self.parse(request, "input", model_required=False)
        if isinstance(parsed, Reply):
            return parsed
        body, model, directives = parsed
        pieces = shapes.words(number(directives, "chunks"))
        response_id = "resp_" + self.next_id()
        response = shapes.model_response(response_id, model, pieces)
        if body.get("store", True):
            self.stored[response_id] = response
        if body.get("stream"):
            events = shapes.response_events(response_id, model, pieces)
            return self.answer(directives, lambda: self.stream(events, directives))
        return self.answer(directives, lambda: Reply(200, orjson.dumps(response)))

    def retrieve_response(self, request: SimRequest, response_id: str) -> Outcome:
        response = self.stored.get(response_id)
        if response is None:
            return xai_error(404, f"Response {response_id} not found.")
        return Reply(200, orjson.dumps(response))

    def delete_response(self, request: SimRequest, response_id: str) -> Outcome:
        if self.stored.pop(response_id, None) is None:
            return xai_error(404, f"Response {response_id} not found.")
        return Reply(200, orjson.dumps({"id": response_id, "object": "response", "deleted": True}))

    # catalogue and account routes
    def list_models(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        directives = parse_directives(parse_qs(request.query).get("sim", [""])[0])
        return self.answer(
            directives, lambda: Reply(200, orjson.dumps({"data": shapes.MODELS, "object": "list"}))
        )

    def retrieve_model(self, request: SimRequest, model_id: str) -> Outcome:
        for model in shapes.MODELS:
            if model["id"] == model_id:
                return Reply(200, orjson.dumps(model))
        return xai_error(404, f"Model not found: {model_id}")

    def language_models(self, request: SimRequest) -> Outcome:
        return Reply(200, orjson.dumps(shapes.language_models()))

    def api_key(self, request: SimRequest) -> Outcome:
        auth = request.headers.get("authorization", "")
        return Reply(200, orjson.dumps(shapes.api_key_info(auth.removeprefix("Bearer "))))

    def upload_file(self, request: SimRequest) -> Outcome:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return xai_error(415, "Expected a multipart/form-data upload.")
        file_id = "file-" + self.next_id()
        self.stored[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(request.body),
            "purpose": "assistants",
        }
        return Reply(200, orjson.dumps(self.stored[file_id]))

    def create_batch(self, request: SimRequest) -> Outcome:
        batch_id = "batch_" + self.next_id()
        self.stored[batch_id] = {"id": batch_id, "object": "batch", "state": "processing"}
        return Reply(200, orjson.dumps(self.stored[batch_id]))

    def create_video(self, request: SimRequest) -> Outcome:
        request_id = "video-" + self.next_id()
        self.stored[request_id] = {"request_id": request_id, "status": "done"}
        return Reply(200, orjson.dumps({"request_id": request_id}))

    def list_kept(self, request: SimRequest) -> Outcome:
        prefix = {"/v1/files": "file-", "/v1/batches": "batch_"}[request.path]
        data = [item for key, item in self.stored.items() if key.startswith(prefix)]
        return Reply(200, orjson.dumps({"object": "list", "data": data}))

    def retrieve_kept(self, request: SimRequest, object_id: str) -> Outcome:
        object_id, _, tail = object_id.partition("/")
        kept = self.stored.get(object_id)
        if kept is None:
            return xai_error(404, f"No object with id {object_id}.")
        if tail == "content":
            return Reply(200, b"file content", "application/octet-stream")
        return Reply(200, orjson.dumps(kept))

    def delete_kept(self, request: SimRequest, object_id: str) -> Outcome:
        if self.stored.pop(object_id, None) is None:
            return xai_error(404, f"No object with id {object_id}.")
        return Reply(200, orjson.dumps({"id": object_id, "deleted": True}))
