"""xAI's own SDK (`xai-sdk`, gRPC) through the real proxy in front of the real simulator."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
import trustme
from xai_sdk import Client
from xai_sdk.chat import user
from xai_sdk.proto.v6 import chat_pb2, chat_pb2_grpc, embed_pb2, embed_pb2_grpc

from grok_proxy.calls.redact import key_fingerprint
from tests.processes import HOST, Proxy, Simulator, free_port, output_of, proxy

KEY = "xai-grpc-caller-secret-5d2e8a1c"
SERVER_KEY = "xai-grpc-server-secret-77f0b3"
REPLY = "Hello! This is the grok-proxy simulator standing in for xAI."


@contextmanager
def grpc_proxy(sim: Simulator, **settings: str) -> Iterator[Proxy]:
    """The proxy with its gRPC listener on, relaying to the simulator's gRPC API."""
    settings = {"xai_grpc_url": f"grpc://{sim.grpc_target}", **settings}
    with proxy(sim.base_url, 1, grok_proxy_grpc_port=str(free_port()), **settings) as running:
        yield running


@pytest.fixture(scope="module")
def relay(sim: Simulator) -> Iterator[Proxy]:
    """The proxy at debug level, so the key-hygiene test reads every line it can write."""
    with grpc_proxy(sim, log_level="debug") as running:
        yield running


def sdk(target: str, key: str = KEY, timeout: float = 20) -> Client:
    """xAI's SDK as a user points it at a local proxy: api_host and an insecure channel."""
    return Client(api_key=key, api_host=target, use_insecure_channel=True, timeout=timeout)


def chat(target: str, model: str, key: str = KEY, timeout: float = 20) -> str:
    with closing(sdk(target, key, timeout)) as client:
        content: str = client.chat.create(model=model, messages=[user("hi")]).sample().content
        return content


def error_of(target: str, model: str, key: str = KEY, timeout: float = 20) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        chat(target, model, key, timeout)
    return caught.value


def details(error: grpc.RpcError) -> str:
    return error.details() or ""


def chat_request(model: str) -> chat_pb2.GetCompletionsRequest:
    return chat_pb2.GetCompletionsRequest(
        model=model,
        messages=[chat_pb2.Message(role=chat_pb2.ROLE_USER, content=[chat_pb2.Content(text="hi")])],
    )


def test_sample_and_stream(relay: Proxy, fresh_sim: Simulator) -> None:
    with closing(sdk(relay.grpc_target)) as client:
        answer = client.chat.create(model="grok-4", messages=[user("hi")]).sample()
        assert answer.content == REPLY
        assert answer.usage.completion_tokens > 0
        pieces = [
            chunk.content
            for _, chunk in client.chat.create(
                model="grok-4@chunks=5", messages=[user("hi")]
            ).stream()
        ]
    assert pieces == [f"tok{i} " for i in range(5)]
    seen = fresh_sim.last_request()
    assert seen["path"] == "/xai_api.Chat/GetCompletionChunk"
    assert seen["headers"]["authorization"] == f"Bearer {KEY}"
    assert "grok-4@chunks=5" in seen["body"]


def test_tokenize_models_image_and_embeddings(relay: Proxy, fresh_sim: Simulator) -> None:
    with closing(sdk(relay.grpc_target)) as client:
        tokens = client.tokenize.tokenize_text("hello world", model="grok-4")
        assert [token.string_token for token in tokens] == ["hello", " world"]
        names = [model.name for model in client.models.list_language_models()]
        assert "grok-4.7" in names
        image = client.image.sample("a cat", model="grok-imagine-image", image_format="url")
        assert image.url.startswith("https://")
        encoded = client.image.sample("a cat", model="grok-imagine-image", image_format="base64")
        assert encoded.base64
    # The SDK has no embeddings client; the generated stub is what its users call.
    with grpc.insecure_channel(relay.grpc_target) as channel:
        reply = embed_pb2_grpc.EmbedderStub(channel).Embed(
            embed_pb2.EmbedRequest(model="v1", input=[embed_pb2.EmbedInput(string="hi")]),
            metadata=[("authorization", f"Bearer {KEY}")],
            timeout=20,
        )
    assert len(reply.embeddings[0].embeddings[0].float_array) == 8


@pytest.mark.parametrize(
    "model", ["grok-4@status=429", "grok-4@status=400", "grok-4@status=403", "no-such-model"]
)
def test_upstream_errors_arrive_exactly_as_xai_sent_them(
    relay: Proxy, sim: Simulator, model: str
) -> None:
    through = error_of(relay.grpc_target, model)
    direct = error_of(sim.grpc_target, model)
    assert (through.code(), details(through)) == (direct.code(), details(direct))


def test_a_429_is_resource_exhausted(relay: Proxy) -> None:
    error = error_of(relay.grpc_target, "grok-4@status=429")
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requests per second limit" in details(error)


def test_an_invalid_key_gets_xais_unauthenticated(relay: Proxy) -> None:
    error = error_of(relay.grpc_target, "grok-4", key="xai-invalid-key-0000")
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(error).startswith("Incorrect API key provided")


def test_an_upstream_answering_before_reading_keeps_its_status(relay: Proxy) -> None:
    # Unknown methods are refused on their headers, before the request is read: the status
    # must come back as sent every time, not as a lost race (INTERNAL) now and then.
    seen = []
    with grpc.insecure_channel(relay.grpc_target) as channel:
        unknown: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/xai_api.NoSuchService/Method"
        )
        for _ in range(50):
            with pytest.raises(grpc.RpcError) as caught:
                unknown(b"", metadata=(("authorization", f"Bearer {KEY}"),), timeout=20)
            seen.append((caught.value.code(), details(caught.value)))
    assert set(seen) == {(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")}


def test_a_cancelled_stream_is_cancelled_upstream(relay: Proxy, fresh_sim: Simulator) -> None:
    with grpc.insecure_channel(relay.grpc_target) as channel:
        stream = chat_pb2_grpc.ChatStub(channel).GetCompletionChunk(
            chat_request("grok-4@chunks=200,pace=50"),
            metadata=[("authorization", f"Bearer {KEY}")],
            timeout=30,
        )
        next(stream)
        next(stream)
        stream.cancel()
    # Within 5 s: left alone, the 200 chunks would take 10 s and complete, not cancel.
    stats = fresh_sim.wait_for_stat("streams_cancelled", 1, timeout=5)
    assert (stats["streams_cancelled"], stats["streams_completed"]) == (1, 0)


def test_a_deadline_shorter_than_the_answer_is_deadline_exceeded_upstream_too(
    relay: Proxy, fresh_sim: Simulator
) -> None:
    error = error_of(relay.grpc_target, "grok-4@delay=5000", timeout=0.5)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The deadline went upstream with the call: xAI stops working on it too.
    fresh_sim.wait_for_stat("requests_cancelled", 1, timeout=5)


def test_metadata_allow_list_and_request_id(relay: Proxy, fresh_sim: Simulator) -> None:
    sent = [
        ("authorization", f"Bearer {KEY}"),
        ("x-grok-conv-id", "conversation-42"),
        ("x-request-id", "caller-id-123"),
        ("cookie", "session=abc"),
        ("proxy-authorization", "Basic c2VjcmV0"),
        ("x-internal-token", "do-not-forward"),
    ]
    with grpc.insecure_channel(relay.grpc_target) as channel:
        _, call = chat_pb2_grpc.ChatStub(channel).GetCompletion.with_call(
            chat_request("grok-4"), metadata=sent, timeout=20
        )
    headers = fresh_sim.last_request()["headers"]
    assert headers["x-grok-conv-id"] == "conversation-42"
    assert headers["x-request-id"] == "caller-id-123"
    assert not {"cookie", "proxy-authorization", "x-internal-token"} & set(headers)
    assert ("x-request-id", "caller-id-123") in call.initial_metadata()


@pytest.fixture(scope="module")
def team_relay(sim: Simulator) -> Iterator[Proxy]:
    """A shared deployment (access keys), impatient with a silent upstream."""
    with grpc_proxy(
        sim,
        grok_proxy_api_keys="team-key-1,team-key-2",
        xai_api_key=SERVER_KEY,
        xai_read_timeout="0.5",
    ) as running:
        yield running


def test_access_keys_are_enforced(team_relay: Proxy, fresh_sim: Simulator) -> None:
    assert chat(team_relay.grpc_target, "grok-4", key="team-key-2") == REPLY
    assert fresh_sim.last_request()["headers"]["authorization"] == f"Bearer {SERVER_KEY}"
    before = fresh_sim.stats()["requests"]
    wrong = error_of(team_relay.grpc_target, "grok-4", key="team-key-3")
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details(wrong) == "The API key is not one of this proxy's access keys."
    with grpc.insecure_channel(team_relay.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            chat_pb2_grpc.ChatStub(channel).GetCompletion(chat_request("grok-4"), timeout=20)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization" in details(caught.value)
    assert fresh_sim.stats()["requests"] == before  # nothing was sent upstream


def test_silent_upstream_past_the_read_timeout_is_deadline_exceeded(team_relay: Proxy) -> None:
    with closing(sdk(team_relay.grpc_target, key="team-key-1")) as client:
        stream = client.chat.create(model="grok-4@chunks=5,stall=2", messages=[user("hi")])
        with pytest.raises(grpc.RpcError) as caught:
            for _ in stream.stream():
                pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "XAI_READ_TIMEOUT" in details(caught.value)


def test_unreachable_upstream_is_unavailable(sim: Simulator) -> None:
    with grpc_proxy(sim, xai_grpc_url=f"grpc://{HOST}:{free_port()}") as running:
        error = error_of(running.grpc_target, "grok-4")
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_shutdown_lets_an_open_stream_finish(sim: Simulator) -> None:
    with grpc_proxy(sim) as running:
        with closing(sdk(running.grpc_target)) as client:
            stream = client.chat.create(model="grok-4@chunks=10,pace=100", messages=[user("hi")])
            pieces: list[str] = []
            for _, chunk in stream.stream():
                if not pieces:
                    running.process.send_signal(signal.SIGTERM)
                pieces.append(chunk.content)
    assert len(pieces) == 10


def test_calls_are_logged_and_counted_without_the_key(relay: Proxy) -> None:
    chat(relay.grpc_target, "grok-4")
    error_of(relay.grpc_target, "grok-4@status=429")
    error_of(relay.grpc_target, "grok-4", key="xai-invalid-" + KEY)
    metrics = httpx.get(f"{relay.url}/metrics").text
    assert (
        'grok_proxy_grpc_calls_total{code="RESOURCE_EXHAUSTED",method="/xai_api.Chat/GetCompletion"}'
        in metrics
    )
    log = output_of(relay.process)
    assert "gRPC /xai_api.Chat/GetCompletion OK" in log
    assert f"key={key_fingerprint(KEY)}" in log
    assert "DEBUG" in log  # the proxy did log at debug level
    assert KEY not in log


class Echo(grpc.GenericRpcHandler):
    """An upstream the proxy knows nothing about: one method per call shape, bytes echoed."""

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        if method == "/echo.Echo/Unary":
            return grpc.unary_unary_rpc_method_handler(lambda request, _: request)
        if method == "/echo.Echo/Split":
            return grpc.unary_stream_rpc_method_handler(lambda request, _: iter(request.split()))
        if method == "/echo.Echo/Join":
            return grpc.stream_unary_rpc_method_handler(lambda requests, _: b" ".join(requests))
        if method == "/echo.Echo/Chat":
            return grpc.stream_stream_rpc_method_handler(lambda requests, _: iter(requests))
        return None


@contextmanager
def tls_echo(ca: trustme.CA) -> Iterator[str]:
    """The echo upstream over TLS, with a certificate from `ca` for 127.0.0.1."""
    limit = 32 * 1024 * 1024
    server = grpc.server(
        ThreadPoolExecutor(4),
        handlers=[Echo()],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
    )
    cert = ca.issue_cert(HOST)
    key, chain = cert.private_key_pem.bytes(), b"".join(pem.bytes() for pem in cert.cert_chain_pems)
    port = server.add_secure_port(f"{HOST}:0", grpc.ssl_server_credentials([(key, chain)]))
    server.start()
    try:
        yield f"grpcs://{HOST}:{port}"
    finally:
        server.stop(0)


def test_any_method_any_shape_over_verified_tls(sim: Simulator, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    auth: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {KEY}"),)
    big = b"x" * (20 * 1024 * 1024)  # the SDK's largest message
    limits = [
        ("grpc.max_receive_message_length", 32 << 20),
        ("grpc.max_send_message_length", 32 << 20),
    ]
    with (
        tls_echo(ca) as upstream,
        grpc_proxy(sim, xai_grpc_url=upstream, ssl_cert_file=str(ca_file)) as running,
    ):
        with grpc.insecure_channel(running.grpc_target, options=limits) as channel:
            unary: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/echo.Echo/Unary"
            )
            split: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                "/echo.Echo/Split"
            )
            join: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
                "/echo.Echo/Join"
            )
            chat: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
                "/echo.Echo/Chat"
            )
            assert unary(b"ping", metadata=auth, timeout=20) == b"ping"
            assert list(split(b"a b c", metadata=auth, timeout=20)) == [b"a", b"b", b"c"]
            assert join(iter([b"a", b"b"]), metadata=auth, timeout=20) == b"a b"
            assert list(chat(iter([b"1", b"2"]), metadata=auth, timeout=20)) == [b"1", b"2"]
            # Ping-pong: the caller sends its second message only after the first answer.
            answered = threading.Event()

            def ping_pong() -> Iterator[bytes]:
                yield b"ping"
                assert answered.wait(timeout=10)
                yield b"pong"

            replies = []
            for reply in chat(ping_pong(), metadata=auth, timeout=20):
                replies.append(reply)
                answered.set()
            assert replies == [b"ping", b"pong"]
            assert unary(big, metadata=auth, timeout=30) == big
            nothing: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                "/echo.Echo/Nothing"
            )
            with pytest.raises(grpc.RpcError) as caught:
                nothing(b"", metadata=auth, timeout=20)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # Without the company CA, the upstream's certificate is not trusted: nothing goes there.
        with grpc_proxy(sim, xai_grpc_url=upstream) as untrusting:
            with grpc.insecure_channel(untrusting.grpc_target) as channel:
                unary = channel.unary_unary("/echo.Echo/Unary")
                with pytest.raises(grpc.RpcError) as refused:
                    unary(b"ping", metadata=auth, timeout=20)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_pydantic_ai_xai_provider_through_the_proxy(relay: Proxy) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.xai import XaiModel
    from pydantic_ai.providers.xai import XaiProvider
    from xai_sdk import AsyncClient

    async def ask() -> str:
        # Built inside the loop that runs it, as async apps do: a grpc.aio channel belongs
        # to the loop current at its creation, which another test's asyncio.run may have
        # closed.
        client = AsyncClient(api_key=KEY, api_host=relay.grpc_target, use_insecure_channel=True)
        agent = Agent(XaiModel("grok-4", provider=XaiProvider(xai_client=client)))
        return (await agent.run("Say hello")).output

    assert asyncio.run(ask()) == REPLY
