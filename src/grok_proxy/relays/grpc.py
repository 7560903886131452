"""The gRPC relay: xAI's own SDK (`xai-sdk`) speaks gRPC, so the proxy relays gRPC too.

Every method (`/package.Service/Method`) is relayed as raw bytes, never decoded, so a
service xAI adds tomorrow works unchanged. All four call shapes take one path: on the
wire every call is a stream of messages each way, so the relay serves every method as
stream-stream and reads the upstream's answer as a stream, which the upstream ends as its
own method does. Only the sending differs: a request that ends after one message goes up
in one batch (see `GrpcRelay._call_upstream`), a longer one streams.

Per call: the caller's key is checked (`CallerAuth`, as on HTTP), an allow-list of
metadata goes upstream with the caller's deadline, messages flow both ways, and the
upstream's initial metadata, trailing metadata, status code and details come back as
they were. One shared channel per worker. Each call has one `RequestRecord`, as an HTTP
request has, and is reported once, as it ends, to the same observers (metrics, the access
line, traces; serving/observers.py).

In a shared proxy (teams) each call is also a member's request: `teams.grpc_calls`
checks its method, model, objects and limits before the upstream call and counts its
usage when it ends (docs/teams.md, "Other protocols").
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

import grpc
from fastapi import FastAPI

from grok_proxy import __version__
from grok_proxy.calls.auth import Caller, CallerAuth, bearer_token
from grok_proxy.calls.errors import MissingApiKey, ProxyError
from grok_proxy.calls.record import GRPC, RequestRecord
from grok_proxy.calls.redact import redact
from grok_proxy.calls.upstream import GrpcTarget, Upstream, upstream_of
from grok_proxy.config import Settings
from grok_proxy.observability.logs import request_id
from grok_proxy.serving.access import request_id_for
from grok_proxy.serving.lifecycle import Drain
from grok_proxy.serving.observers import Finished, Observer, finish_all, grpc_scope, start_all

if TYPE_CHECKING:
    from grok_proxy.calls.policies import CallGate, CallPolicy

log = logging.getLogger("grok_proxy.grpc")

# Above the SDK's 20 MiB each way, so the limit a caller meets is always the SDK's or xAI's.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Request metadata that goes upstream; everything else (cookies, proxy credentials, ...)
# stays here. `authorization` is rebuilt from the admitted key, `x-request-id` is ours.
# (The caller's user agent cannot be relayed: grpc sets the header from the channel, so
# xAI sees grok-proxy's; the SDK's own version still travels in `xai-sdk-version`.)
FORWARDED_METADATA = frozenset({"x-grok-conv-id", "xai-sdk-version", "xai-sdk-language"})
# Response metadata grpc manages itself and refuses to be handed.
RESERVED_METADATA = frozenset({"content-type", "te", "user-agent", "date", "server"})
# How long to wait for the end of a request after its first message (see _call_upstream).
END_OF_REQUEST_WAIT = 0.02
# The end of the caller's messages (None or b"" would be a message: Empty is b"").
END = object()
# What grpc.aio reports when a request write loses a race with the upstream's early status.
LOST_STATUS = (grpc.StatusCode.INTERNAL, "Internal error from Core")
WHERE_KEY = "the `authorization` call metadata (`Bearer <key>`)"
# Not a setting: how `grok-proxy serve` tells its workers the HTTP host (uvicorn does not).
HOST_VARIABLE = "GROK_PROXY_GRPC_HOST"

Metadata = Sequence[tuple[str, str | bytes]]


def proxy_option(upstream: Upstream, target: GrpcTarget) -> list[tuple[str, Any]]:
    """The channel's forward proxy, by the one rule HTTP and WebSocket follow (upstream.py).

    With no proxy, grpc is told to use none: left alone it would read `grpc_proxy` and
    `https_proxy` from the environment itself, past XAI_PROXY_URL and `direct`.
    """
    proxy = upstream.grpc_proxy(target)
    if proxy is None:
        return [("grpc.enable_http_proxy", 0)]
    return [("grpc.http_proxy", proxy.address)]  # grpc sends its credentials itself


def channel_options(upstream: Upstream, target: GrpcTarget) -> list[tuple[str, Any]]:
    """Options of the shared upstream channel: the SDK's limits, keepalive and proxy."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # Callers retry as they see fit (the SDK does on UNAVAILABLE); a second retry
        # layer here would multiply attempts and hide what xAI answered.
        ("grpc.enable_retries", 0),
        ("grpc.primary_user_agent", f"grok-proxy/{__version__}"),
        *proxy_option(upstream, target),
    ]


SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # The SDK pings every 30 s, with or without calls; grpc's server default would answer
    # such pings with GOAWAY ("too_many_pings") and drop the caller's connection.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    # With --workers N, every worker listens on the same port and the kernel spreads
    # connections among them (the CLI checks first that no other process holds the port).
    ("grpc.so_reuseport", 1),
]


UpstreamCall = grpc.aio.UnaryStreamCall[bytes, bytes] | grpc.aio.StreamStreamCall[bytes, bytes]


class GrpcRelay(grpc.GenericRpcHandler):
    """Relays every gRPC method to one upstream over one shared channel."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        policy: CallPolicy | None = None,
        observers: tuple[Observer, ...] = (),
    ) -> None:
        self.settings = settings
        # Metrics, the access line, traces: told when each call starts and ends.
        self.observers = observers
        self.upstream = upstream_of(settings)
        self.target = GrpcTarget.parse(url)
        # Shared: member keys in, the account's key out, and each call is a member's request.
        self.policy = policy
        self.auth = policy.auth if policy is not None else CallerAuth(settings)
        self.read_timeout = settings.upstream.read_timeout
        self.channel: grpc.aio.Channel | None = None
        self.server: grpc.aio.Server | None = None
        self.stopping: asyncio.Task[None] | None = None

    # lifecycle
    async def start(self, host: str, port: int) -> None:
        """Open the upstream channel and listen on host:port."""
        options = channel_options(self.upstream, self.target)
        if self.target.tls:
            credentials = grpc.ssl_channel_credentials(self.upstream.roots)
            self.channel = grpc.aio.secure_channel(self.target.address, credentials, options)
        else:
            self.channel = grpc.aio.insecure_channel(self.target.address, options)
        self.server = grpc.aio.server(options=SERVER_OPTIONS)
        self.server.add_generic_rpc_handlers((self,))
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.server.add_insecure_port(listen)
        await self.server.start()
        log.info(
            "gRPC relay listening on %s, upstream %s://%s",
            listen,
            "grpcs" if self.target.tls else "grpc",
            self.target.address,
        )

    def begin_drain(self) -> None:
        """Refuse new calls, give open ones the shutdown grace (the SIGTERM path)."""
        if self.server is not None and self.stopping is None:
            # Held here: the loop keeps only a weak reference to a task.
            self.stopping = asyncio.get_running_loop().create_task(
                self.server.stop(self.settings.serving.shutdown_grace_seconds)
            )

    async def stop(self) -> None:
        """Wait for open calls (up to the grace), then close the listener and the channel."""
        if self.server is not None:
            await self.server.stop(self.settings.serving.shutdown_grace_seconds)
        if self.channel is not None:
            await self.channel.close()

    # grpc.GenericRpcHandler
    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes]:
        """Every method is served by `relay`, with raw bytes both ways."""
        relay = partial(
            self.relay, handler_call_details.method, handler_call_details.invocation_metadata
        )
        return grpc.stream_stream_rpc_method_handler(relay)

    # the relay
    async def relay(
        self,
        method: str,
        metadata: Metadata,
        requests: AsyncIterator[bytes],
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> AsyncIterator[bytes]:
        """One call, any shape: caller's messages upstream, upstream's back, status kept."""
        started = perf_counter()
        incoming = dict(metadata)
        record = RequestRecord(
            request_id=_request_id(incoming.get("x-request-id")), protocol=GRPC, route=method
        )
        # Each call runs in its own task, so the id stays on this call's log lines.
        request_id.set(record.request_id)
        scope = grpc_scope(method, context.peer(), incoming, (self.target.host, self.target.port))
        # Sees each answer message (only tracing asks to).
        listen = start_all(self.observers, scope, record)
        code = grpc.StatusCode.OK
        call: UpstreamCall | None = None
        following: asyncio.Future[object] | None = None
        gate: CallGate | None = None
        try:
            caller = self._admit(incoming, record)
            # The first message says what the call is (model, objects): read before the call.
            first = await anext(requests, END)
            upstream_metadata = _upstream_metadata(incoming, caller.upstream_key, record.request_id)
            if record.on_forward is not None:  # traceparent naming the call's span
                upstream_metadata = [*upstream_metadata, *record.on_forward(first)]
            if self.policy is not None:
                gate = await self._member_gate(caller, method, first, record)
            call, following = await self._call_upstream(
                method, first, requests, record=record, metadata=upstream_metadata, context=context
            )
            initial = await self._within_read_timeout(call.initial_metadata())
            await context.send_initial_metadata(
                (*_relayable(initial), ("x-request-id", record.request_id))
            )
            while (message := await self._within_read_timeout(call.read())) is not grpc.aio.EOF:
                record.messages_out += 1
                if gate is not None:
                    await gate.answer(message)
                if listen is not None:
                    listen({"type": "grpc.answer", "message": message})
                yield message
            code = await call.code()
            context.set_trailing_metadata(_relayable(await call.trailing_metadata()))
        except _Answered as answered:
            # The proxy answered itself; nothing went upstream.
            code = _answer(context, answered.code, answered.details, answered.trailing)
        except grpc.aio.AioRpcError as failed:
            # What the upstream said, exactly: code, details and trailers.
            code, details, trailing = failed.code(), failed.details(), failed.trailing_metadata()
            if call is not None and (code, details) == LOST_STATUS:
                code, details, trailing = await _settled_status(call)
            context.set_trailing_metadata(_relayable(trailing))
            _answer(context, code, redact(details or ""))
        except TimeoutError:
            code = _answer(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"The xAI API sent nothing for {self.read_timeout:g} s (XAI_READ_TIMEOUT).",
            )
        except asyncio.CancelledError:
            # The caller cancelled, its deadline passed, or shutdown ran out of grace.
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            await _settle(call, following, gate)
            done = Finished(scope, method, record, code.name, started, None, perf_counter())
            finish_all(self.observers, done)

    def _admit(self, incoming: dict[str, str | bytes], record: RequestRecord) -> Caller:
        """The caller behind the call's `authorization`, or UNAUTHENTICATED (_Answered)."""
        presented = incoming.get("authorization")
        try:
            caller = self.auth.admit(
                bearer_token(presented) if isinstance(presented, str) else None, where=WHERE_KEY
            )
        except MissingApiKey as refused:
            raise _Answered(grpc.StatusCode.UNAUTHENTICATED, refused.message) from None
        record.key_fingerprint = caller.fingerprint
        return caller

    async def _member_gate(
        self, caller: Caller, method: str, first: object, record: RequestRecord
    ) -> CallGate:
        """A shared proxy's checks of this call (teams), or the refusal they end in."""
        assert self.policy is not None
        gate = self.policy.gate(caller, method)
        record.member_id = gate.member.id
        try:
            await gate.admit(first)
        except ProxyError as refused:
            raise _Answered(*self.policy.status_of(refused)) from None
        return gate

    async def _within_read_timeout(self, waiting: Any) -> Any:
        """`waiting`, unless the upstream stays silent past XAI_READ_TIMEOUT."""
        async with asyncio.timeout(self.read_timeout):
            return await waiting

    async def _call_upstream(
        self,
        method: str,
        first: object,
        requests: AsyncIterator[bytes],
        *,
        record: RequestRecord,
        metadata: Metadata,
        context: grpc.aio.ServicerContext[bytes, bytes],
    ) -> tuple[UpstreamCall, asyncio.Future[object] | None]:
        """Start the upstream call with the caller's first message (`first`) in hand.

        A request that ends after one message (unary and server-streaming calls: nearly all)
        goes up in one batch with its end, so no later write can lose a race with an early
        upstream status (grpc.aio would then report INTERNAL in its place), and grpc does
        less work. Otherwise requests stream up as they come. Either way the answer comes
        back the same way, and the caller's deadline goes with the call. Also returned: a
        read of the caller's stream still under way.
        """
        assert self.channel is not None
        following: asyncio.Future[object] | None = None
        if isinstance(first, bytes):
            following = asyncio.ensure_future(anext(requests, END))
            # A unary request's end rides in the frame of its message: it is there at once.
            await asyncio.wait((following,), timeout=END_OF_REQUEST_WAIT)
            if following.done() and following.result() is END:
                record.messages_in = 1
                unary: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = self.channel.unary_stream(
                    method
                )  # no (de)serializers: raw bytes
                return unary(first, metadata=metadata, timeout=context.time_remaining()), None
        stream: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = self.channel.stream_stream(
            method
        )
        feed = _feed(first, following, requests, record)
        return stream(feed, metadata=metadata, timeout=context.time_remaining()), following


class _Answered(Exception):
    """The proxy answers the call itself (a refusal): nothing of it went upstream."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> None:
        super().__init__(details)
        self.code, self.details, self.trailing = code, details, trailing


def _answer(
    context: grpc.aio.ServicerContext[bytes, bytes],
    code: grpc.StatusCode,
    details: str,
    trailing: Metadata = (),
) -> grpc.StatusCode:
    """Set the call's status (and trailers); the code, for the record."""
    if trailing:
        context.set_trailing_metadata(trailing)
    context.set_code(code)
    context.set_details(details)
    return code


async def _settle(
    call: UpstreamCall | None, following: asyncio.Future[object] | None, gate: CallGate | None
) -> None:
    """The end of a call: the upstream call and the read of the caller's stream stopped, the
    member's usage counted."""
    if call is not None and not call.done():
        call.cancel()  # nobody pays for tokens no one reads
    if following is not None and not following.done():
        following.cancel()
    if gate is not None:
        # Counted (failed and cancelled calls too) before the status goes out, which
        # happens when the relay's generator returns: the caller's next call sees the usage.
        await gate.finish()


async def _feed(
    first: object,
    following: asyncio.Future[object] | None,
    requests: AsyncIterator[bytes],
    record: RequestRecord,
) -> AsyncIterator[bytes]:
    """The caller's messages for a streamed request: the two already read, then the rest."""
    if not isinstance(first, bytes):
        return
    record.messages_in += 1
    yield first
    # Awaited only now: a bidirectional caller may wait for an answer before sending more.
    second = END if following is None else await following
    if not isinstance(second, bytes):
        return
    record.messages_in += 1
    yield second
    async for message in requests:
        record.messages_in += 1
        yield message


async def _settled_status(
    call: UpstreamCall,
) -> tuple[grpc.StatusCode, str | None, grpc.aio.Metadata]:
    """The upstream's real status, after grpc.aio reported LOST_STATUS in its place.

    When the upstream answers before reading the request (UNIMPLEMENTED, a refusal on
    headers), the relay's write of the request can fail, and grpc.aio then reports INTERNAL
    "Internal error from Core" although the upstream's own status is on its way; it lands on
    the same call a moment later (grpc.aio records the received status after the error).
    """
    for _ in range(50):
        if (await call.code(), await call.details()) != LOST_STATUS:
            break
        await asyncio.sleep(0.002)
    return await call.code(), await call.details(), await call.trailing_metadata()


def _request_id(presented: str | bytes | None) -> str:
    """The caller's x-request-id when it is a plausible id (as on HTTP), else a new one."""
    return request_id_for(presented if isinstance(presented, str) else None)


def _upstream_metadata(incoming: dict[str, str | bytes], key: str, rid: str) -> Metadata:
    forwarded = [(name, value) for name, value in incoming.items() if name in FORWARDED_METADATA]
    return [("authorization", f"Bearer {key}"), ("x-request-id", rid), *forwarded]


def _relayable(metadata: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    if not metadata:
        return ()
    # Values lose the server's secrets, as relayed HTTP headers do (an upstream may echo them).
    return tuple(
        (name, redact(value) if isinstance(value, str) else value)
        for name, value in metadata
        if name not in RESERVED_METADATA and not name.startswith(("grpc-", ":"))
    )


def attach(app: FastAPI, settings: Settings, policy: CallPolicy | None = None) -> None:
    """Run the gRPC relay inside the app's lifespan, on this worker's event loop."""
    port = settings.serving.grpc_port
    if not port:
        return
    url = upstream_of(settings).grpc_url
    if url is None:
        log.warning(
            "gRPC relay off: XAI_UPSTREAM=%s has no gRPC API (set XAI_GRPC_URL to relay anyway)",
            settings.upstream.preset,
        )
        return
    host = os.environ.get(HOST_VARIABLE, "127.0.0.1")
    http_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with http_lifespan(app) as state:
            # The same observers as HTTP's (app.py): one count, one access line, one span.
            relay = GrpcRelay(settings, url, policy, app.state.observers)
            await relay.start(host, port)
            # The worker's one shutdown fan-out (installed by the app): SIGTERM stops gRPC too.
            drain: Drain = app.state.drain
            drain.on_begin(relay.begin_drain)
            try:
                yield state
            finally:
                await relay.stop()

    app.router.lifespan_context = lifespan


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port yet (workers then share it via SO_REUSEPORT)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As a listener would: connections of an earlier run in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def announce(settings: Settings, host: str, http_port: int) -> None:
    """Before the workers start: check the gRPC port is free, say where both listeners are."""
    port = settings.serving.grpc_port
    upstream = upstream_of(settings)
    url = upstream.grpc_url
    if url is None:
        log.info("grok-proxy starting: HTTP on http://%s:%d, gRPC off", host, http_port)
        return
    try:
        # A malformed XAI_GRPC_URL, or a proxy grpc cannot use, stops the start.
        upstream.grpc_proxy(GrpcTarget.parse(url))
    except ValueError as exc:
        raise SystemExit(f"grok-proxy: configuration error: {exc}") from None
    if not port_is_free(host, port):
        raise SystemExit(
            f"grok-proxy: the gRPC port {host}:{port} is in use; choose another with "
            "--grpc-port or GROK_PROXY_GRPC_PORT (0 turns gRPC off)"
        )
    os.environ[HOST_VARIABLE] = host
    log.info(
        "grok-proxy starting: HTTP on http://%s:%d, gRPC on %s:%d (upstream %s)",
        host,
        http_port,
        host,
        port,
        url,
    )
