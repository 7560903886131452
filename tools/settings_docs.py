"""Write `.env.example` and the settings tables of docs/configuration.md from the Settings fields.

    uv run python tools/settings_docs.py          # rewrite both files
    uv run python tools/settings_docs.py --check  # exit 1 if either committed file is stale

The fields (src/grok_proxy/config/groups.py) are the one source: a variable, its default, a
one-line description for `.env.example`, and details the docs table adds. The prose of
docs/configuration.md around the tables (`<!-- settings:GROUP -->` ... `<!-- /settings -->`)
is kept as written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grok_proxy.config.reference import env_example, with_tables

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"
CONFIGURATION = ROOT / "docs" / "configuration.md"


def rendered() -> dict[Path, str]:
    """Each file as the settings would write it."""
    return {
        ENV_EXAMPLE: env_example(),
        CONFIGURATION: with_tables(CONFIGURATION.read_text(encoding="utf-8")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file is stale")
    args = parser.parse_args()
    for path, text in rendered().items():
        if args.check:
            if path.read_text(encoding="utf-8") != text:
                sys.exit(f"{path} is stale: run uv run python tools/settings_docs.py")
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
