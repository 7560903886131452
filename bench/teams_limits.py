"""CPU of the limit path alone: Team.check + Team.record_usage, in-process, on SQLite.

    taskset -c 0 uv run python bench/teams_limits.py [--requests 50000]

A member without limits against one with a request limit and a token budget, measured
twice each in the order off, on, on, off. No HTTP, no upstream: what the limit path adds
to a request's CPU, which the HTTP bench (bench/teams.py) cannot resolve below the noise
of a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time

from grok_proxy.config import Settings
from grok_proxy.teams.members import Limits, Member
from grok_proxy.teams.team import Team

USAGE = {"prompt": 10, "completion": 20, "reasoning": 0, "cached": 0}


async def per_request(team: Team, member: Member, requests: int) -> float:
    """Microseconds of process CPU per check + record_usage, after a warm-up."""
    for _ in range(2000):  # the first leases are small; they grow with the demand
        admission = await team.check(member, "chat/completions", "grok-4")
        await team.record_usage(member, "grok-4", USAGE, admission)
    started = time.process_time()
    for _ in range(requests):
        admission = await team.check(member, "chat/completions", "grok-4")
        await team.record_usage(member, "grok-4", USAGE, admission)
    return (time.process_time() - started) / requests * 1e6


async def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            _env_file=None,
            xai_api_key="xai-bench",
            grok_proxy_data_dir=data,
            model_prices="grok-4=2/0.5/10",
        )
        team = Team(settings)
        try:
            await team.store.migrate()
            _, free = await team.store.add_member("free", Limits())
            _, limited = await team.store.add_member(
                "bench", Limits(rpm=10**9, tokens_per_month=10**12)
            )
            await team.reload()
            pair = [("member without limits", free), ("limited member", limited)]
            sys.stdout.write("| member | CPU us per check + record_usage |\n|---|---|\n")
            for name, key in pair + pair[::-1]:
                cost = await per_request(team, team.admit(key), requests)
                sys.stdout.write(f"| {name} | {cost:.1f} |\n")
        finally:
            await team.store.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().requests))
