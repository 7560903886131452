"""Plain (non-streamed) chat completions driven by wrk, with each watched process's CPU."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field

from bench.measure import cpu_seconds
from bench.processes import KEY, LOAD_CORE, pinned

BODY = '{"model":"grok-4","messages":[{"role":"user","content":"Say hello"}]}'


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    # CPU time per request (user + system, microseconds) of each watched process and of wrk.
    cpu_us: dict[str, float] = field(default_factory=dict)


def wrk(
    url: str,
    connections: int,
    seconds: int,
    watch: dict[str, int] | None = None,
    key: str = KEY,
    body: str = BODY,
) -> Load:
    """wrk on the load core, POSTing `body` with `key` for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = '{body}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        )
    # A request counts as failed after 10 s without an answer (wrk's default is 2 s, which
    # a saturated peer such as LiteLLM exceeds while still answering).
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency"]
    command += ["-s", script.name, url]
    watch = watch or {}
    before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    with tempfile.TemporaryFile("w+") as out:
        load = subprocess.Popen(pinned(LOAD_CORE, command), stdout=out)
        # wait4 hands back wrk's own CPU use (taskset execs it, so the pid is wrk's).
        _, status, usage = os.wait4(load.pid, 0)
        load.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    os.unlink(script.name)
    if load.returncode != 0:
        raise RuntimeError(f"wrk failed: {output}")
    spent = {name: cpu_seconds(pid) - before[name] for name, pid in watch.items()}
    spent["wrk"] = usage.ru_utime + usage.ru_stime

    def latency(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)\b", output)
        assert match, output
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rate, output
    total = re.search(r"(\d+) requests in", output)
    assert total, output
    requests = int(total.group(1))
    cpu_us = {name: used / max(1, requests) * 1e6 for name, used in spent.items()}
    return Load(float(rate.group(1)), latency("50"), latency("99"), errors, requests, cpu_us)
