"""Members of a team, their limits, and their access keys (kept only as hashes)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from grok_proxy.calls.redact import key_fingerprint

# Access keys carry 256 random bits: a plain SHA-256 cannot be reversed or guessed, and
# it costs a microsecond on every request, where argon2 or bcrypt (made to slow down the
# guessing of low-entropy passwords) would cost tens of milliseconds of CPU per request.
KEY_PREFIX = "gpk-"

LIMIT_FIELDS = (
    "rpm",
    "tpm",
    "tokens_per_day",
    "tokens_per_month",
    "dollars_per_day",
    "dollars_per_month",
)


def new_access_key() -> str:
    """A fresh access key: shown once, then only its hash is kept."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of an access key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Limits:
    """What a member may do; None means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    dollars_per_day: float | None = None
    dollars_per_month: float | None = None
    models: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()

    @property
    def counted(self) -> bool:
        """Whether any limit needs the shared counters (a database round trip per request)."""
        return any(getattr(self, name) is not None for name in LIMIT_FIELDS)

    @property
    def metered(self) -> bool:
        """Whether tokens or dollars are limited (usage must reach the counters at once)."""
        return any(getattr(self, name) is not None for name in LIMIT_FIELDS[1:])

    def allows_model(self, model: str) -> bool:
        """Whether `model` matches one of the allowed patterns (all when none are set)."""
        return not self.models or any(fnmatchcase(model, pattern) for pattern in self.models)

    def allows_route(self, route: str) -> bool:
        """Whether the route (path below /api/v1, no leading slash) is allowed."""
        if not self.routes:
            return True
        return any(route == allowed or route.startswith(allowed + "/") for allowed in self.routes)

    def to_json(self) -> dict[str, Any]:
        """The limits that are set, as stored and shown."""
        data: dict[str, Any] = {
            name: getattr(self, name) for name in LIMIT_FIELDS if getattr(self, name) is not None
        }
        if self.models:
            data["models"] = list(self.models)
        if self.routes:
            data["routes"] = list(self.routes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Limits:
        """Limits from their stored form; unknown fields are ignored."""
        data = data or {}
        values: dict[str, Any] = {name: data.get(name) for name in LIMIT_FIELDS}
        values["models"] = tuple(data.get("models") or ())
        values["routes"] = tuple(route.strip("/") for route in data.get("routes") or ())
        return cls(**values)

    def updated(self, changes: dict[str, Any]) -> Limits:
        """These limits with `changes` applied (a None value removes that limit)."""
        data = self.to_json()
        for name, value in changes.items():
            if value in (None, "", []):
                data.pop(name, None)
            else:
                data[name] = value
        return Limits.from_json(data)


@dataclass(frozen=True, slots=True)
class Member:
    """One person or service sharing the account."""

    id: str
    name: str
    limits: Limits = field(default_factory=Limits)
    disabled: bool = False
    # Name of an environment variable holding the member's own xAI key (never the key).
    xai_key_env: str | None = None
    # Members from GROK_PROXY_API_KEYS exist only in the settings, not in the database.
    from_settings: bool = False


def settings_member(key: str) -> Member:
    """The unnamed member behind one of GROK_PROXY_API_KEYS, named by its log fingerprint."""
    fingerprint = key_fingerprint(key)
    return Member(id=f"key-{fingerprint[7:]}", name=f"key {fingerprint}", from_settings=True)


# A member is addressed by name in the admin API's paths and named in log lines.
MAX_NAME_CHARS = 64


def check_member_name(name: str) -> None:
    """Refuse a name the admin API could not address (`/admin/members/{name}`) or log."""
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"name must be 1 to {MAX_NAME_CHARS} characters")
    if "/" in name or not name.isprintable() or name != name.strip():
        raise ValueError("name must be printable, without `/` or surrounding spaces")
