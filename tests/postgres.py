"""A throwaway PostgreSQL cluster in a temporary directory, reached by its unix socket."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.processes import free_port


def postgres_bin() -> Path | None:
    """Directory of initdb and pg_ctl (Debian keeps them out of PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _as_owner(command: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: run it as the `postgres` account then.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class Cluster:
    """A running cluster that a test may stop and start again (a database outage)."""

    def __init__(self, binaries: Path, data: Path, options: str, log: Path, url: str) -> None:
        self.binaries, self.data, self.options, self.log, self.url = (
            binaries,
            data,
            options,
            log,
            url,
        )

    def _ctl(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            _as_owner([str(self.binaries / "pg_ctl"), "-D", str(self.data), *args]),
            check=check,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self._ctl("-o", self.options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "-w", "stop", check=False)


@contextmanager
def postgres_server() -> Iterator[Cluster]:
    """Start a cluster; yield it; stop and remove it afterwards."""
    binaries = postgres_bin()
    assert binaries is not None
    with tempfile.TemporaryDirectory(prefix="grok-proxy-pg-") as temp:
        root = Path(temp)
        data, sockets = root / "data", root / "sockets"
        sockets.mkdir()
        user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            shutil.chown(sockets, "postgres")
        subprocess.run(
            _as_owner(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=60,
        )
        port = free_port()
        options = f"-k {sockets} -p {port} -c listen_addresses='' -c fsync=off"
        url = f"postgresql://{user}@/postgres?host={sockets}&port={port}"
        cluster = Cluster(binaries, data, options, root / "server.log", url)
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """Start a cluster; yield a DATABASE_URL for it; stop and remove it afterwards."""
    with postgres_server() as cluster:
        yield cluster.url
