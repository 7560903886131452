"""Oversized request heads: memory and other callers' latency, guarded protocol vs uvicorn's.

    uv run python bench/oversized_heads.py                       # grok-proxy's protocol
    uv run python bench/oversized_heads.py --protocol httptools  # uvicorn's own, for comparison

Four connections each send 32 MB of tiny headers while a fifth sends one 64 MB header
value; meanwhile a client asks /health every 50 ms. Prints the server's RSS before and
after, each flood's answer and time, and the slowest /health.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.processes import HOST, free_port

PROTOCOLS = {"guarded": "grok_proxy.serving.http_protocol:GuardedHttpToolsProtocol"}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def flood(port: int, size: int, single_value: bool, results: list[str]) -> None:
    started = time.perf_counter()
    sock = socket.create_connection((HOST, port), timeout=120)
    answer = bytearray()

    def read() -> None:
        try:
            while chunk := sock.recv(65536):
                answer.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    chunk = b"y" * (1 << 20) if single_value else b"a: b\r\n" * (1 << 18)
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n" + (b"x-big: " if single_value else b""))
        sent = 0
        while sent < size:
            sock.sendall(chunk)
            sent += len(chunk)
        # End the head, so that a server that buffers it all answers at last.
        sock.sendall(b"\r\n\r\n" if single_value else b"\r\n")
    except OSError:
        pass
    reader.join(120)
    sock.close()
    status = bytes(answer[:12]).decode(errors="replace") or "(no answer)"
    results.append(f"{status} after {time.perf_counter() - started:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="guarded", help="guarded, or uvicorn's httptools")
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, uvicorn; uvicorn.run('grok_proxy.app:serve_app', factory=True, "
            "host=sys.argv[1], port=int(sys.argv[2]), http=sys.argv[3], loop='uvloop', "
            "log_level='warning')",
            HOST,
            str(port),
            PROTOCOLS.get(args.protocol, args.protocol),
        ],
        env={"XAI_BASE_URL": "http://127.0.0.1:9/v1", "LOG_LEVEL": "warning"},
    )
    url = f"http://{HOST}:{port}/health"
    try:
        for _ in range(200):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        before = rss_mb(server.pid)
        results: list[str] = []
        floods = [
            threading.Thread(target=flood, args=(port, 32 << 20, False, results)) for _ in range(4)
        ]
        floods.append(threading.Thread(target=flood, args=(port, 64 << 20, True, results)))
        for thread in floods:
            thread.start()
        slowest, failures, peak = 0.0, 0, before
        with httpx.Client() as client:
            while any(thread.is_alive() for thread in floods):
                started = time.perf_counter()
                try:
                    client.get(url, timeout=60)
                except httpx.TransportError:
                    failures += 1
                slowest = max(slowest, time.perf_counter() - started)
                peak = max(peak, rss_mb(server.pid))
                time.sleep(0.05)
        after = rss_mb(server.pid)
        print(f"protocol: {args.protocol}")
        print(f"RSS {before:.0f} MB -> peak {peak:.0f} MB -> {after:.0f} MB after")
        print("floods:", "; ".join(results))
        print(f"slowest /health meanwhile: {slowest * 1000:.0f} ms, {failures} failed")
    finally:
        server.kill()
        server.wait(10)


if __name__ == "__main__":
    main()
