"""The offline stand-in for api.x.ai: xAI's shapes, deterministic answers, injectable faults.

Each API area lives in its own module (chat, responses, messages, media, files, embeddings,
account); this one routes to them, checks keys and offers the test hooks.

What the simulated model does, deterministically:

- offered tools (and `tool_choice` not `none`): it calls one, the forced one or else the
  first, with arguments that validate against the tool's schema (`tool_calls`, Responses
  `function_call` items, Anthropic `tool_use` blocks); a streamed call comes whole in one chunk;
- after a tool result (`tool` messages, `function_call_output` items, `tool_result` blocks):
  it answers in text, "The tool returned: <result>";
- `response_format` / `text.format` `json_schema`: a JSON instance of the schema ($ref/$defs,
  enums, nested objects and arrays); `json_object`: `{"answer": ...}`;
- reasoning models (grok-4.7, grok-4.3, grok-4.20 reasoning ...) think first:
  `reasoning_content` (chat), a reasoning item and `reasoning_summary_text` events
  (Responses), a `thinking` block when Anthropic `thinking` is on, reasoning tokens in
  usage; `grok-4` is kept as a non-reasoning legacy alias;
- server-side tools offered to Responses are each used once (usage counts and bills them);
- usage carries `cost_in_usd_ticks` from the twin's own price list (catalog.py), plain and
  streamed; images and finished videos carry theirs in `usage`.

Strict as xAI: unknown paths and models are 404 (xAI's message); `search_parameters` is 410
Gone; a key that contains `invalid` gets xAI's 400 "Incorrect API key provided" (xAI answers
400, not 401, so the OpenAI SDK raises BadRequestError); no key at all is 401. The API is
served under `/v1`, OpenRouter's `/api/v1` and Cloudflare's `/v1/<account>/<gateway>/grok/v1`
bases, and nowhere else (`/api/v1/v1/messages` is a 404, as at xAI).

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
pending        with `deferred: true`: the deferred result stays 202 (not ready)
cost=N         report exactly N in `cost_in_usd_ticks` (chat, Responses, Messages,
               images, videos, gRPC)
cached=N       report N of the prompt tokens as cached, and price them so
frame=F        how a stream is framed on the wire; several joined with `+`
               (`frame=crlf+split`):
                 `lf`        LF line ends, one event per write (the default)
                 `crlf`      CRLF line ends
                 `split`     each write cut in pieces: mid-line, and between CR and LF
                 `batch`     three events per write
                 `comments`  an SSE comment line opens the stream and each event
                 `multiline` JSON data spread over several `data:` lines
=============  ==============================================================

Tests look inside through ``GET /_sim/requests`` (what arrived), ``GET /_sim/stats``
(counters, including requests and streams the client cancelled), ``GET /_sim/streams``
(the exact bytes of recent streams, base64, oldest first) and ``POST /_sim/reset``.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from grok_proxy.simulator.account import Account
from grok_proxy.simulator.chat import Chat
from grok_proxy.simulator.core import Kit, ok, xai_error
from grok_proxy.simulator.documents import Documents
from grok_proxy.simulator.embeddings import Embeddings
from grok_proxy.simulator.files import Files
from grok_proxy.simulator.media import Media
from grok_proxy.simulator.messages import Messages
from grok_proxy.simulator.responses import Responses
from grok_proxy.simulator.wire import Outcome, Reply, SimRequest

Route = Callable[..., "Outcome | Awaitable[Outcome]"]


class Stateful(Protocol):
    """An area that keeps objects between requests (stored responses, files, videos...)."""

    def clear(self) -> None: ...


# Where xAI's API is served: xAI itself, and the access points grok-proxy has presets for.
BASES = re.compile(r"^(?:/v1/[^/]+/[^/]+/grok/v1|/api/v1|/v1)(?=/)")


def invalid_key(key: str) -> Reply:
    """xAI's answer to a key it does not know: 400, with the key redacted."""
    return xai_error(
        400,
        f"Incorrect API key provided: {key[:2]}***{key[-2:]}. You can obtain an API key "
        "from https://console.x.ai.",
    )


class Simulator:
    """Answers xAI's routes and remembers what it was asked."""

    def __init__(self) -> None:
        self.kit = Kit()
        self.chat = Chat(self.kit)
        self.responses = Responses(self.kit)
        self.messages = Messages(self.kit)
        self.media = Media(self.kit)
        self.files = Files(self.kit)
        self.embeddings = Embeddings(self.kit)
        self.documents = Documents(self.kit)
        self.account = Account(self.kit)
        # What `POST /_sim/reset` empties besides the request log (the gRPC side adds itself).
        self.stateful: list[Stateful] = [self.chat, self.responses, self.media, self.files]
        self.controls: dict[tuple[str, str], Route] = {
            ("GET", "/_sim/requests"): self.list_requests,
            ("GET", "/_sim/stats"): self.get_stats,
            ("GET", "/_sim/streams"): self.list_streams,
            ("POST", "/_sim/reset"): self.reset,
        }
        self.exact: dict[tuple[str, str], Route] = {}
        self.patterns: list[tuple[str, re.Pattern[str], Route]] = []
        for method, path, route in self.routes():
            if "{" in path:
                regex = re.compile("^" + re.sub(r"\{\w+\}", "([^/]+)", path) + "$")
                self.patterns.append((method, regex, route))
            else:
                self.exact[(method, path)] = route
        self.reset(None)

    def routes(self) -> list[tuple[str, str, Route]]:
        """Every API route, as paths below the base; `{id}` is passed to the handler."""
        chat, responses, messages = self.chat, self.responses, self.messages
        media, files, account = self.media, self.files, self.account
        return [
            ("POST", "/chat/completions", chat.completions),
            ("GET", "/chat/deferred-completion/{id}", chat.deferred_completion),
            ("POST", "/completions", chat.text_completions),
            ("POST", "/responses", responses.create),
            ("GET", "/responses/{id}", responses.retrieve),
            ("DELETE", "/responses/{id}", responses.delete),
            ("POST", "/messages", messages.create),
            ("POST", "/messages/count_tokens", messages.count_tokens),
            ("POST", "/complete", messages.complete),
            ("POST", "/images/generations", media.generate_images),
            ("POST", "/images/edits", media.edit_images),
            ("POST", "/videos/generations", media.start_video),
            ("POST", "/videos/edits", media.start_video),
            ("POST", "/videos/extensions", media.start_video),
            ("GET", "/videos/{id}", media.video),
            ("POST", "/embeddings", self.embeddings.create),
            ("POST", "/tokenize-text", self.embeddings.tokenize),
            ("POST", "/documents/search", self.documents.search),
            ("GET", "/models", account.list_models),
            ("GET", "/models/{id}", account.retrieve_model),
            ("GET", "/language-models", account.language_models),
            ("GET", "/language-models/{id}", account.language_model),
            ("GET", "/embedding-models", account.embedding_models),
            ("GET", "/embedding-models/{id}", account.embedding_model),
            ("GET", "/image-generation-models", account.image_models),
            ("GET", "/image-generation-models/{id}", account.image_model),
            ("GET", "/video-generation-models", account.video_models),
            ("GET", "/video-generation-models/{id}", account.video_model),
            ("GET", "/api-key", account.api_key),
            ("POST", "/files", files.upload),
            ("GET", "/files", files.list_files),
            ("GET", "/files/{id}", files.retrieve),
            ("DELETE", "/files/{id}", files.delete),
            ("GET", "/files/{id}/content", files.content),
            ("POST", "/batches", files.create_batch),
            ("GET", "/batches", files.list_batches),
            ("GET", "/batches/{id}", files.get_batch),
            ("POST", "/batches/{id}/requests", files.add_requests),
            ("GET", "/batches/{id}/results", files.results),
        ]

    # plumbing
    def count_cancel(self, streaming: bool) -> None:
        self.kit.count_cancel(streaming)

    def handle(self, request: SimRequest) -> Outcome | Awaitable[Outcome]:
        if request.path.startswith("/_sim/"):
            control = self.controls.get((request.method, request.path))
            return control(request) if control else xai_error(404, "No such simulator control.")
        self.kit.requests.append(request)
        self.kit.count("requests")
        refused = self.check_key(request)
        if refused is not None:
            return refused
        base = BASES.match(request.path)
        if base is None:
            return self.no_route(request)
        path = request.path[base.end() :]
        route = self.exact.get((request.method, path))
        if route is not None:
            return route(request)
        for method, regex, handler in self.patterns:
            found = regex.match(path)
            if found and method == request.method:
                return handler(request, *found.groups())
        return self.no_route(request)

    @staticmethod
    def no_route(request: SimRequest) -> Reply:
        return xai_error(404, f"No route {request.method} {request.path}.")

    @staticmethod
    def check_key(request: SimRequest) -> Reply | None:
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        key = key or request.headers.get("x-api-key", "").strip()
        if not key:
            return xai_error(401)
        if "invalid" in key:
            return invalid_key(key)
        return None

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
            for r in self.kit.requests
        ]
        return Reply(200, orjson.dumps(items))

    def get_stats(self, request: SimRequest) -> Reply:
        return ok(self.kit.stats)

    def list_streams(self, request: SimRequest) -> Reply:
        return ok([base64.b64encode(bytes(s)).decode() for s in self.kit.streams])

    def reset(self, request: SimRequest | None) -> Reply:
        self.kit.clear()
        for area in self.stateful:
            area.clear()
        return Reply(200, b'{"reset":true}')

    @property
    def stats(self) -> dict[str, Any]:
        return self.kit.stats

    # What the gRPC simulator shares with the HTTP one: the request log, counters and ids.
    @property
    def requests(self) -> deque[SimRequest]:
        return self.kit.requests

    @property
    def sequence(self) -> int:
        return self.kit.sequence

    def count(self, name: str) -> None:
        self.kit.count(name)

    def next_id(self) -> str:
        return self.kit.next_id()
