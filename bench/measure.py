"""What the benchmark reads from /proc: CPU, memory, descriptors and upstream connections."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

TICKS = os.sysconf("SC_CLK_TCK")
ESTABLISHED = "01"  # the `st` column of /proc/net/tcp


def _stat_fields(pid: int) -> list[str]:
    # The command name may hold spaces and parentheses: split after its closing one.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn's workers, nginx's worker)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and all its descendants, every thread included."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = _stat_fields(member)
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


def peak_rss_mb(pid: int) -> float:
    """The process's resident high-water mark (VmHWM) since it started."""
    return _status_kb(pid, "VmHWM:") / 1024


def upstream_sockets(port: int) -> set[int]:
    """Inodes of the established TCP sockets whose remote end is 127.0.0.1:`port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == ESTABLISHED and int(fields[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


@dataclass
class Peaks:
    """The largest values seen while sampling a process tree."""

    rss_mb: float = 0.0
    descriptors: int = 0
    upstream_connections: int = 0
    samples: int = 0


class PeakSampler:
    """Samples a process tree in a thread: resident memory, open descriptors and the
    established connections it holds to `upstream_port` (its upstream pool)."""

    def __init__(self, pid: int, upstream_port: int, interval: float = 1.0) -> None:
        self.pid, self.upstream_port, self.interval = pid, upstream_port, interval
        self.peaks = Peaks()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peaks:
        self._thread.start()
        return self.peaks

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # one last look, after the load ended

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        rss_kb, descriptors, sockets = 0, 0, set()
        for member in process_tree(self.pid):
            try:
                rss_kb += _status_kb(member, "VmRSS:")
                fd_dir = f"/proc/{member}/fd"
                for fd in os.listdir(fd_dir):
                    descriptors += 1
                    try:
                        target = os.readlink(f"{fd_dir}/{fd}")
                    except FileNotFoundError:
                        continue
                    if target.startswith("socket:["):
                        sockets.add(int(target[8:-1]))
            except (FileNotFoundError, ProcessLookupError):
                continue
        upstream = len(sockets & upstream_sockets(self.upstream_port))
        peaks = self.peaks
        peaks.rss_mb = max(peaks.rss_mb, rss_kb / 1024)
        peaks.descriptors = max(peaks.descriptors, descriptors)
        peaks.upstream_connections = max(peaks.upstream_connections, upstream)
        peaks.samples += 1


def percentile(ordered: list[float], fraction: float) -> float:
    """The `fraction` percentile of an already sorted list (nan when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
