"""How long one large payload holds the proxy's event loop (issue 24, item 11).

    uv run python tools/measure_stalls.py [body|sse|ws] ...

Each scenario runs the real proxy process (one worker) in front of the simulator or a
scripted upstream. Inside the proxy a task sleeps 2 ms at a time and notes how late it
wakes: the longest delay is the longest stall, the time any other caller's request would
have waited (a long C call included, which a thread could not see: it needs the GIL).
Outside, /health is polled on its own connection while the payload is handled (the
longest answer time). Every loop is bounded.

- body: one 60 MiB validated chat body (`/chat/completions`), as one string and as 300,000
  messages.
- sse: one 60 MB SSE event from a scripted upstream, relayed to a reading client.
- ws: 2,000 open realtime sessions, then SIGTERM: the drain closes them all at once.

With STALL_TRACE=1, the proxy's log is kept and the loop's stack at each stall of 30 ms
or more is written next to it (their paths are printed): a poor man's profiler of stalls.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.processes import HOST, free_port, simulator, wait_until_up
from tests.scripted import LAST_CHUNK, Route, chunk, head, scripted

KEY = "measure-key"

# Runs inside the proxy: the loop watcher, started once the app's lifespan installs the drain.
CHILD = r"""
import asyncio, os, sys, threading, time, traceback
import grok_proxy.serving.lifecycle as lifecycle

worst = [0.0]

async def tick():
    # How late a 2 ms sleep wakes up is how long the loop was held (C calls included).
    while True:
        started = time.perf_counter()
        await asyncio.sleep(0.002)
        worst[0] = max(worst[0], time.perf_counter() - started - 0.002)

def report(path):
    # A thread writes the figure out, so the loop does no file I/O for the measurement.
    while True:
        if os.path.exists(path + ".reset"):
            os.remove(path + ".reset")
            worst[0] = 0.0
            if os.path.exists(path + ".trace"):
                os.remove(path + ".trace")
        with open(path + ".tmp", "w") as out:
            out.write(f"{worst[0]:.6f}")
        os.replace(path + ".tmp", path)
        time.sleep(0.01)

def sample(loop, path):
    # With STALL_TRACE: the loop thread's stack whenever a posted callback waits 30 ms.
    while True:
        ran = threading.Event()
        loop.call_soon_threadsafe(ran.set)
        if not ran.wait(0.03):
            frame = sys._current_frames().get(threading.main_thread().ident)
            with open(path + ".trace", "a") as out:
                out.write("--- stalled 30 ms in:\n" + "".join(traceback.format_stack(frame)))
        ran.wait(30)
        time.sleep(0.002)

install = lifecycle.Drain.install
def watched_install(self):
    loop = asyncio.get_running_loop()
    path = os.environ["STALL_FILE"]
    loop.create_task(tick())
    threading.Thread(target=report, args=(path,), daemon=True).start()
    if os.environ.get("STALL_TRACE"):
        threading.Thread(target=sample, args=(loop, path), daemon=True).start()
    install(self)
lifecycle.Drain.install = watched_install
from grok_proxy.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Proxy:
    def __init__(self, upstream: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.stall_file = tempfile.mktemp(prefix="stall-")  # noqa: S306 - a name for the child
        self.log = tempfile.NamedTemporaryFile(prefix="stall-proxy-", suffix=".log", delete=False)  # noqa: SIM115
        environment = {
            **os.environ,
            "XAI_BASE_URL": upstream,
            "XAI_API_KEY": "sim-key",
            "GROK_PROXY_API_KEYS": KEY,
            "GROK_PROXY_GRPC_PORT": "0",
            "LOG_LEVEL": "warning",
            "STALL_FILE": self.stall_file,
            **env,
        }
        args = ["serve", "--host", HOST, "--port", str(self.port), "--workers", "1"]
        self.process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
            [sys.executable, "-c", CHILD, *args], env=environment, stdout=self.log, stderr=self.log
        )
        wait_until_up(f"{self.url}/health", self.process)
        time.sleep(0.3)

    def reset(self) -> None:
        Path(self.stall_file + ".reset").touch()
        time.sleep(0.05)

    def worst(self) -> float:
        return float(Path(self.stall_file).read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        if os.environ.get("STALL_TRACE"):
            print(f"proxy log: {self.log.name}; stalls: {self.stall_file}.trace", flush=True)
        else:
            os.remove(self.log.name)


class HealthProbe:
    """Polls /health on a kept-alive connection until stopped (at most 60 s)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.count = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 60
            while not self.stopping.is_set() and time.monotonic() < deadline:
                started = time.perf_counter()
                client.get(f"{self.url}/health")
                self.worst = max(self.worst, time.perf_counter() - started)
                self.count += 1
                time.sleep(0.005)

    def stop(self) -> tuple[float, int]:
        self.stopping.set()
        self.thread.join(60)
        return self.worst, self.count


def report(name: str, proxy: Proxy, probe: HealthProbe | None, took: float) -> None:
    health = ""
    if probe is not None:
        worst, count = probe.stop()
        health = f", /health worst {worst * 1000:.0f} ms over {count} polls"
    print(
        f"{name}: handled in {took * 1000:.0f} ms; longest loop stall "
        f"{proxy.worst() * 1000:.0f} ms{health}",
        flush=True,
    )


def measure_body() -> None:
    mib = 60 * 1024 * 1024
    one_string = orjson.dumps(
        {"model": "grok-4", "messages": [{"role": "user", "content": "x" * mib}]}
    )
    many = orjson.dumps(
        {
            "model": "grok-4",
            "messages": [{"role": "user", "content": "x" * 190}] * 300_000,
        }
    )
    with simulator() as sim:
        proxy = Proxy(sim.base_url)
        try:
            for name, body in (("one 60 MiB string", one_string), ("300,000 messages", many)):
                for _ in range(2):
                    proxy.reset()
                    probe = HealthProbe(proxy.url)
                    started = time.perf_counter()
                    answer = httpx.post(
                        f"{proxy.url}/api/v1/chat/completions",
                        content=body,
                        headers={"authorization": f"Bearer {KEY}"},
                        timeout=120,
                    )
                    took = time.perf_counter() - started
                    time.sleep(0.1)
                    report(
                        f"body, {name} ({len(body)} B, {answer.status_code})", proxy, probe, took
                    )
        finally:
            proxy.stop()


def measure_sse() -> None:
    size = 60_000_000
    payload = b'{"choices":[{"delta":{"content":"' + b"x" * size + b'"}}]}'
    event = b"data: " + payload + b"\n\n"
    done = b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    with scripted() as upstream:
        upstream.routes["/v1/chat/completions"] = Route(
            [
                head(200, {"content-type": "text/event-stream", "transfer-encoding": "chunked"}),
                chunk(event),
                chunk(done),
                LAST_CHUNK,
            ]
        )
        proxy = Proxy(upstream.base_url)
        try:
            for _ in range(2):
                proxy.reset()
                probe = HealthProbe(proxy.url)
                started = time.perf_counter()
                received = 0
                body = {"model": "grok-4", "stream": True, "messages": []}
                with httpx.stream(
                    "POST",
                    f"{proxy.url}/api/v1/chat/completions",
                    json=body,
                    headers={"authorization": f"Bearer {KEY}"},
                    timeout=120,
                ) as answer:
                    for piece in answer.iter_raw():
                        received += len(piece)
                took = time.perf_counter() - started
                time.sleep(0.1)
                exact = received == len(event) + len(done)
                report(f"sse, one {size} B event (relayed exactly: {exact})", proxy, probe, took)
        finally:
            proxy.stop()


async def open_sessions(url: str, count: int) -> list[websockets.ClientConnection]:
    opened: list[websockets.ClientConnection] = []
    headers = {"authorization": f"Bearer {KEY}"}
    for start in range(0, count, 100):
        batch = [
            websockets.connect(url, additional_headers=headers, max_queue=None)
            for _ in range(start, min(count, start + 100))
        ]
        opened += await asyncio.gather(*batch)
    return opened


async def drain_all(sessions: list[websockets.ClientConnection]) -> int:
    async def until_closed(ws: websockets.ClientConnection) -> int:
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        return ws.close_code or 0

    codes = await asyncio.wait_for(asyncio.gather(*(until_closed(ws) for ws in sessions)), 60)
    return sum(1 for code in codes if code == 1001)


def measure_ws(count: int = 2000) -> None:
    with simulator() as sim:
        proxy = Proxy(sim.base_url, SHUTDOWN_GRACE_SECONDS="3")
        try:
            url = f"ws://{HOST}:{proxy.port}/api/v1/realtime?model=grok-voice-latest@pace=1000"

            async def run() -> None:
                sessions = await open_sessions(url, count)
                await asyncio.sleep(1.0)
                proxy.reset()
                started = time.perf_counter()
                proxy.process.send_signal(signal.SIGTERM)
                ended = await drain_all(sessions)
                took = time.perf_counter() - started
                report(
                    f"ws, {count} sessions closed by SIGTERM ({ended} with 1001)", proxy, None, took
                )

            asyncio.run(run())
        finally:
            proxy.stop()


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["body", "sse", "ws"]
    for scenario in chosen:
        {"body": measure_body, "sse": measure_sse, "ws": measure_ws}[scenario]()
