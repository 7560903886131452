"""A real OTLP/HTTP trace receiver on loopback, decoding with the official opentelemetry-proto.

It answers `POST /v1/traces` as a collector does (protobuf `ExportTraceServiceResponse`),
keeps every span it received, and lets tests wait, bounded, for the spans they expect.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

HOST = "127.0.0.1"


@dataclass
class ReceivedSpan:
    """One span as a collector sees it, ids in hex."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    # 0 unset, 1 ok, 2 error (opentelemetry.proto.trace.v1.Status.StatusCode)
    status_code: int
    status_message: str
    resource: dict[str, Any]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind is None:
        return None
    return getattr(value, kind)


@dataclass
class Receiver:
    """What arrived, with the content type and encoding of each export."""

    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    exports: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            status_message=span.status.message,
                            resource=resource,
                        )
                    )
        with self.lock:
            self.spans.extend(found)

    def wait_for(
        self, matches: Callable[[ReceivedSpan], bool], count: int = 1, timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """The first `count` spans that match, polled until they arrived (or the timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [span for span in self.spans if matches(span)]
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert len(found) >= count, f"{len(found)} of {count} spans arrived: {self.spans}"
        return found[:count]


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """A running receiver; its `url` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.exports.append(
                {
                    "path": self.path,
                    "content-type": self.headers.get("content-type", ""),
                    "authorization": self.headers.get("authorization", ""),
                }
            )
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            receiver.take(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    receiver.url = f"http://{HOST}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
