"""Refresh the copy of xAI's published OpenAPI document that the proxy ships and tests against.

    uv run python tools/refresh_xai_spec.py                  # fetch https://docs.x.ai/openapi.json
    uv run python tools/refresh_xai_spec.py --from FILE      # take a copy saved by hand
    uv run python tools/refresh_xai_spec.py --check          # exit 1 if the fetched one differs

The document is written byte for byte as published to
src/grok_proxy/schemas/xai-openapi.json, and the operations it adds or removes are listed.
Then run `uv run pytest tests/unit/test_published_schema.py` (the proxy must forward every
schema-valid request of every operation unchanged; a new operation may need a route) and
`uv run python tools/make_postman.py` (the documented request schemas come from this file),
and commit the file with the date of the copy in the message.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "src" / "grok_proxy" / "schemas" / "xai-openapi.json"
SOURCE = "https://docs.x.ai/openapi.json"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def operations(document: dict[str, Any]) -> set[str]:
    """`METHOD /path` of every operation of an OpenAPI document."""
    return {
        f"{method.upper()} {path}"
        for path, item in document.get("paths", {}).items()
        for method in item
        if method in METHODS
    }


def fetch(url: str) -> bytes:
    # S310: the URL is the fixed https SOURCE, never a caller's.
    request = urllib.request.Request(url, headers={"accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        body: bytes = answer.read()
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", help="a saved copy instead of fetching")
    parser.add_argument("--check", action="store_true", help="only say whether it changed")
    args = parser.parse_args()
    fresh = Path(args.source).read_bytes() if args.source else fetch(SOURCE)
    document = json.loads(fresh)  # refuse anything that is not JSON before writing it
    if not str(document.get("openapi", "")).startswith("3."):
        sys.stderr.write("not an OpenAPI 3 document\n")
        return 2
    current = SPEC.read_bytes()
    before, after = operations(json.loads(current)), operations(document)
    for line in sorted(after - before):
        sys.stdout.write(f"+ {line}\n")
    for line in sorted(before - after):
        sys.stdout.write(f"- {line}\n")
    changed = fresh != current
    sys.stdout.write(f"{len(after)} operations; {'changed' if changed else 'unchanged'}\n")
    if args.check:
        return 1 if changed else 0
    if changed:
        SPEC.write_bytes(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
