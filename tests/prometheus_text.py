"""Reading samples out of a `/metrics` page (Prometheus' text format) in tests."""

from __future__ import annotations

import re


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (summed over other labels), 0 when absent."""
    total = 0.0
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
