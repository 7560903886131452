"""What sharing costs per request: pass-through vs. a shared proxy, on SQLite and PostgreSQL.

    uv run python bench/teams.py [--seconds 5]

One run, same machine, same simulator; the proxy pinned to core 0, simulator and wrk on
core 1 (see bench/run.py). Rows: pass-through; a shared proxy with a GROK_PROXY_API_KEYS
member (key lookup, ownership scope, batched usage: no database round trip per request);
then, per database, one proxy process measured first with a member without limits and
then with a member with a request limit and a token budget (served from the worker's
leases on the shared counters: a statement only when a lease runs out), on SQLite and,
when installed, PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import plain, processes  # noqa: E402
from tests.postgres import postgres_bin, postgres_cluster  # noqa: E402

HOST = processes.HOST


@contextmanager
def shared_proxy(port: int, upstream: str, env: dict[str, str]) -> Iterator[int]:
    command = [sys.executable, "-m", "grok_proxy", "serve", "--host", HOST, "--port", str(port)]
    settings = {"XAI_BASE_URL": upstream, "LOG_LEVEL": "warning", **env}
    proc = subprocess.Popen(
        processes.pinned(processes.PROXY_CORE, command),
        env={**os.environ, **settings},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Importing the database stack and migrating takes seconds on a busy machine.
        processes.wait_for(f"http://{HOST}:{port}/health", timeout=120)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def add_member(env: dict[str, str], name: str, *limits: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "grok_proxy", "members", "add", name, *limits],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


def measure(name: str, url: str, key: str, pid: int, seconds: int) -> str:
    plain.wrk(url, 32, 1, key=key)  # warm-up
    load = plain.wrk(url, 32, seconds, {"proxy": pid}, key=key)
    return (
        f"| {name} | {load.requests_per_s:,.0f} | {load.p50_ms:.1f} | {load.p99_ms:.1f} | "
        f"{load.cpu_us['proxy']:.0f} | {load.errors} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=5)
    seconds = parser.parse_args().seconds
    rows = []
    sim_port = processes.free_port()
    upstream = f"http://{HOST}:{sim_port}/v1"
    with processes.simulator(sim_port), tempfile.TemporaryDirectory() as temp, ExitStack() as stack:
        path = "/api/v1/chat/completions"
        port = processes.free_port()
        with shared_proxy(port, upstream, {}) as pid:
            rows.append(
                measure("pass-through", f"http://{HOST}:{port}{path}", "xai-k", pid, seconds)
            )
        team = {"XAI_API_KEY": "xai-server", "GROK_PROXY_DATA_DIR": f"{temp}/a"}
        keyed = {**team, "GROK_PROXY_API_KEYS": "member-key-0123456789"}
        port = processes.free_port()
        with shared_proxy(port, upstream, keyed) as pid:
            url = f"http://{HOST}:{port}{path}"
            rows.append(
                measure("shared, member without limits", url, "member-key-0123456789", pid, seconds)
            )
        databases = [("SQLite", {**team, "GROK_PROXY_DATA_DIR": f"{temp}/b"})]
        if postgres_bin() is not None:
            databases.append(
                ("PostgreSQL", {**team, "DATABASE_URL": stack.enter_context(postgres_cluster())})
            )
        for label, env in databases:
            free = add_member(env, "free")
            limited = add_member(
                env, "bench", "--rpm", "1000000000", "--tokens-per-month", "1000000000000"
            )
            port = processes.free_port()
            # Both members through the same proxy process, so a pair differs only in the
            # limit path; in the order off, on, on, off, so that a drift of the shared
            # machine's load during the run shows as a difference between the two of a kind.
            with shared_proxy(port, upstream, env) as pid:
                url = f"http://{HOST}:{port}{path}"
                pair = [("member without limits", free), ("limited member", limited)]
                for kind, key in pair + pair[::-1]:
                    rows.append(measure(f"{label}: {kind}", url, key, pid, seconds))
    out = sys.stdout
    out.write("| configuration | req/s | p50 ms | p99 ms | proxy CPU us/request | non-2xx |\n")
    out.write("|---|---|---|---|---|---|\n")
    out.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
