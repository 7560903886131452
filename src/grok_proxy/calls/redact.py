"""Secrets out of relayed upstream text: the server's own, and any key-shaped string.

An upstream that echoes credentials in an error message would otherwise show the server's
key (or a gateway token) to every holder of an access key. Error messages relayed to a
caller pass through `redact` (errors.upstream_error does it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

from grok_proxy.config import Settings

REDACTED = "[redacted]"


@lru_cache(maxsize=4096)  # a handful of keys call all day: hash each once
def key_fingerprint(key: str) -> str:
    """A short, one-way tag for a key: safe to log, useless to an attacker."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:8]


# xAI keys (`xai-…`) and OpenAI-style keys (`sk-…`, `sk-proj-…`, `sk-or-v1-…`, `sk-ant-…`).
KEY_SHAPE = re.compile(r"(?<![A-Za-z0-9])(?:xai|sk)-[A-Za-z0-9_\-]{12,}")
# Shorter access keys are not searched for: they could be ordinary words in a message.
MIN_ACCESS_KEY_LENGTH = 12

_server_secrets: tuple[str, ...] = ()


def remember_secrets(settings: Settings) -> None:
    """Note this process's secrets (server key, gateway token, access keys) for `redact`."""
    global _server_secrets  # noqa: PLW0603 - one set of secrets per process
    _server_secrets = server_secrets(settings)


def server_secrets(settings: Settings) -> tuple[str, ...]:
    """The secrets of a configuration, longest first (so no shorter one splits a longer one)."""
    found: set[str] = set()
    for secret in (settings.access.server_key, settings.upstream.cloudflare_aig_token):
        if secret is not None and secret.get_secret_value():
            found.add(secret.get_secret_value())
    try:
        keys: Iterable[str] = settings.access.api_keys
    except OSError:
        keys = ()
    found.update(key for key in keys if len(key) >= MIN_ACCESS_KEY_LENGTH)
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, caller_key: str | None = None, secrets: Iterable[str] | None = None) -> str:
    """`text` without the server's secrets, nor key-shaped strings other than `caller_key`.

    `caller_key` is the key the caller sent (they know it); it is removed anyway when it is
    one of the server's secrets. `secrets` defaults to those `remember_secrets` noted.
    """
    for secret in _server_secrets if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "xai-" not in text and "sk-" not in text:
        return text
    return KEY_SHAPE.sub(
        lambda match: match.group(0) if caller_key and match.group(0) == caller_key else REDACTED,
        text,
    )


def redact_header(value: bytes) -> bytes:
    """A relayed upstream header value, redacted as `redact` does text.

    An upstream (or a gateway in front of it) that echoes the Authorization header in an
    `x-xai-*` or rate-limit header would otherwise hand the server's key to the caller.
    """
    text = value.decode("latin-1")
    cleaned = redact(text)
    return value if cleaned == text else cleaned.encode("latin-1")
