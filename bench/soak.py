"""Soak: mixed load with faults and hang-ups; memory and descriptors must not creep.

    uv run python bench/soak.py --seconds 600     # the documented 10-minute run
    uv run python bench/soak.py --seconds 30      # what the test suite runs

Workers loop over a fixed mix: plain chat, streams, retried 503s, cut streams, streams the
client abandons after the first chunk, requests the client abandons while upstream
thinks, 404s, images and Anthropic streams. After a warm-up third, the proxy's RSS is the
baseline; at the end it may have grown by less than 5 MB, and its open file descriptors
must come back to the warm-up level once the load stops.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.processes import HOST, KEY, free_port, proxy, simulator

MAX_RSS_GROWTH_MB = 5.0
MESSAGES = [{"role": "user", "content": "hi"}]

# (name, path, body, how the client behaves)
MIX: list[tuple[str, str, dict[str, object], str]] = [
    ("plain", "/chat/completions", {"model": "grok-4", "messages": MESSAGES}, "read"),
    (
        "stream",
        "/chat/completions",
        {"model": "grok-4@chunks=20,pace=5", "stream": True, "messages": MESSAGES},
        "read",
    ),
    ("retried", "/chat/completions", {"model": "grok-4@status=503", "messages": MESSAGES}, "read"),
    (
        "cut",
        "/chat/completions",
        {"model": "grok-4@chunks=20,pace=2,cut=5", "stream": True, "messages": MESSAGES},
        "read",
    ),
    (
        "abandoned stream",
        "/chat/completions",
        {"model": "grok-4@chunks=200,pace=10", "stream": True, "messages": MESSAGES},
        "leave",
    ),
    (
        "abandoned wait",
        "/chat/completions",
        {"model": "grok-4@delay=2000", "messages": MESSAGES},
        "timeout",
    ),
    ("not found", "/chat/completions", {"model": "nope", "messages": MESSAGES}, "read"),
    ("image", "/images/generations", {"prompt": "a fox"}, "read"),
    (
        "anthropic stream",
        "/messages",
        {
            "model": "grok-4@chunks=10,pace=2",
            "max_tokens": 50,
            "stream": True,
            "messages": MESSAGES,
        },
        "read",
    ),
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


def descriptors(pid: int, upstream_port: int) -> Counter[str]:
    """The process's descriptors by kind: files, upstream sockets by state, caller sockets."""
    states: dict[str, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if os.path.exists(table):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                states[fields[9]] = (TCP_STATES.get(fields[3], fields[3]), remote_port)
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            state, port = states.get(target[8:-1], ("other", 0))
            if state == "other":
                kinds["internal socket"] += 1  # not TCP: the event loop's own socketpairs
                continue
            where = "upstream" if port == upstream_port else "caller"
            kinds["listening" if state == "LISTEN" else f"{where} {state}"] += 1
        else:
            kinds["file"] += 1
    return kinds


def leaks(now: Counter[str], baseline: Counter[str], workers: int) -> list[str]:
    """What in `now` is more than an idle pool explains."""
    found = []
    for kind in ("file", "internal socket"):
        if now[kind] > baseline[kind]:
            found.append(f"{now[kind] - baseline[kind]} descriptors of kind {kind!r}")
    half_closed = sum(n for kind, n in now.items() if kind.endswith("CLOSE_WAIT"))
    if half_closed:
        found.append(f"{half_closed} sockets in CLOSE_WAIT")
    if now["upstream ESTABLISHED"] > workers:
        found.append(f"{now['upstream ESTABLISHED']} upstream connections for {workers} workers")
    callers = sum(n for kind, n in now.items() if kind.startswith("caller"))
    if callers:
        found.append(f"{callers} caller sockets still open")
    return found


async def load(base: str, until: float, workers: int, outcomes: Counter[str]) -> None:
    headers = {"authorization": f"Bearer {KEY}", "x-api-key": KEY}
    timeout = aiohttp.ClientTimeout(total=30)

    async def worker(offset: int) -> None:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for name, path, body, behaviour in itertools.islice(itertools.cycle(MIX), offset, None):
                if time.monotonic() >= until:
                    return
                try:
                    if behaviour == "timeout":
                        short = aiohttp.ClientTimeout(total=0.2)
                        async with session.post(
                            base + path, json=body, headers=headers, timeout=short
                        ) as r:
                            await r.read()
                    else:
                        async with session.post(base + path, json=body, headers=headers) as r:
                            if behaviour == "leave":
                                await r.content.readany()
                                r.close()  # hang up mid-stream
                            else:
                                await r.read()
                            outcomes[f"{name} {r.status}"] += 1
                            continue
                except TimeoutError:
                    outcomes[f"{name} abandoned"] += 1
                    continue
                outcomes[f"{name} ?"] += 1

    await asyncio.gather(*(worker(i) for i in range(workers)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    sim_port, proxy_port = free_port(), free_port()
    with simulator(sim_port), proxy(proxy_port, f"http://{HOST}:{sim_port}/v1") as proc:
        base = f"http://{HOST}:{proxy_port}/api/v1"
        outcomes: Counter[str] = Counter()
        warm_up = args.seconds / 3
        asyncio.run(load(base, time.monotonic() + warm_up, args.workers, outcomes))
        baseline_rss = rss_mb(proc.pid)
        baseline = descriptors(proc.pid, sim_port)
        asyncio.run(load(base, time.monotonic() + args.seconds - warm_up, args.workers, outcomes))
        end_rss = rss_mb(proc.pid)
        deadline = time.monotonic() + 10
        while (
            leaks(descriptors(proc.pid, sim_port), baseline, args.workers)
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        end = descriptors(proc.pid, sim_port)

    total = sum(outcomes.values())
    print(f"soak: {args.seconds:.0f}s, {args.workers} workers, {total} requests")
    for outcome, count in sorted(outcomes.items()):
        print(f"  {outcome:28s} {count}")
    growth = end_rss - baseline_rss
    print(
        f"RSS after warm-up {baseline_rss:.1f} MB, at the end {end_rss:.1f} MB (growth {growth:+.1f} MB)"
    )
    print(f"descriptors after warm-up {dict(baseline)}, after the load {dict(end)}")
    failures = []
    if growth >= MAX_RSS_GROWTH_MB:
        failures.append(f"RSS grew by {growth:.1f} MB")
    failures += [f"leaked {leak}" for leak in leaks(end, baseline, args.workers)]
    unexpected = [
        o
        for o in outcomes
        if o.endswith(" ?") or (" 5" in o and not o.startswith(("retried", "cut")))
    ]
    if unexpected:
        failures.append(f"unexpected outcomes: {unexpected}")
    if failures:
        sys.exit("soak failed: " + "; ".join(failures))
    print("soak passed")


if __name__ == "__main__":
    main()
