"""`.env.example` and the settings tables of docs/configuration.md, written from the fields.

tools/settings_docs.py writes both files; tests/unit/test_config.py fails when either differs
from what these functions give, so the docs cannot drift from the code.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

from pydantic.fields import FieldInfo

from grok_proxy.config.settings import Settings, groups, variable_of

GENERATOR = "tools/settings_docs.py"
# One table per group: `<!-- settings:upstream -->`, the table, `<!-- /settings -->`.
TABLE = re.compile(r"<!-- settings:(?P<group>\w+)[^>]*-->\n.*?<!-- /settings -->", re.DOTALL)

ENV_HEADER = f"""\
# grok-proxy settings: copy to .env and change what you need. Every value shown is the default;
# secrets are blank. docs/configuration.md explains each one. Written by {GENERATOR}
# from src/grok_proxy/config/groups.py: change a setting there, then run it.
"""
ENV_FOOTER = """
# ==== Traces ====
# OpenTelemetry traces (docs/tracing.md) are off unless an OTLP/HTTP collector is named; the SDK
# reads the other OTEL_* variables (OTEL_SERVICE_NAME, ...) as usual.
# OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318
"""


def fields(group: str) -> Iterator[tuple[str, FieldInfo]]:
    """Each setting of a group: its variable and its field."""
    for field in groups()[group].model_fields.values():
        yield variable_of(field), field


def default_of(field: FieldInfo) -> object:
    return field.get_default(call_default_factory=True)


def env_value(field: FieldInfo) -> str:
    """A default as a `.env` line writes it: empty for none, `false`, `5`, `0.5`."""
    value = default_of(field)
    if value is None or value in ("", [], {}, ()):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def comment(text: str) -> list[str]:
    """`.env.example` comment lines; a code span such as `: keep-alive` is never split."""
    return textwrap.wrap(
        text,
        width=98,
        initial_indent="# ",
        subsequent_indent="# ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def env_example() -> str:
    """The whole `.env.example`: every setting by group, each with its one-line description."""
    lines = [ENV_HEADER]
    for group, model in groups().items():
        title = Settings.model_fields[group].title
        lines += [f"# ==== {title} ====", f"# {model.__doc__}", ""]
        for variable, field in fields(group):
            lines += comment(field.description or "")
            lines.append(f"{variable}={env_value(field)}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n" + ENV_FOOTER


def shown_default(field: FieldInfo) -> str:
    """A default as the docs table shows it."""
    value = default_of(field)
    if value is None:
        return "(none)"
    text = env_value(field)
    return f"`{text}`" if text else "(empty)"


def effect(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    more = extra.get("details") if isinstance(extra, dict) else None
    text = f"{field.description} {more}" if more else str(field.description)
    return text.replace("|", "\\|")


def table(group: str) -> str:
    """One group's settings table, between its markers."""
    rows = [
        f"<!-- settings:{group} (written by {GENERATOR}) -->",
        "| Variable | Default | Effect |",
        "|---|---|---|",
    ]
    rows += [f"| `{name}` | {shown_default(f)} | {effect(f)} |" for name, f in fields(group)]
    return "\n".join([*rows, "<!-- /settings -->"])


def with_tables(markdown: str) -> str:
    """`markdown` with each marked table written anew; every group must have exactly one."""
    marked = [match["group"] for match in TABLE.finditer(markdown)]
    if sorted(marked) != sorted(groups()):
        raise ValueError(
            f"the settings tables marked are {marked}; there must be one for each of "
            f"{list(groups())}"
        )
    return TABLE.sub(lambda match: table(match["group"]), markdown)
