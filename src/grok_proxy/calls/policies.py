"""What a sharing policy decides for the WebSocket and gRPC relays, as small interfaces.

The relays call these and import no policy: the composition root (app.py) hands them the
team's implementations (teams/ws_sessions.py, teams/grpc_calls.py) on a shared proxy, and
nothing on a proxy of one user, whose callers' own keys go upstream (auth.CallerAuth).
The HTTP side's policy is the team gate in front of the rows (entry.Entry's `policy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import grpc

    from grok_proxy.calls.auth import Caller, CallerAuth
    from grok_proxy.calls.errors import ProxyError


class Member(Protocol):
    """Whose session or call it is (for traces and logs)."""

    @property
    def id(self) -> str: ...


class SessionGate(Protocol):
    """One WebSocket session under a policy: what it may open, which turns it may start."""

    @property
    def member(self) -> Member: ...

    async def open(self) -> None:
        """Before anything goes upstream; ProxyError refuses the handshake."""

    async def from_caller(self, data: str | bytes) -> str | None:
        """A caller's message; an error event to answer instead of relaying it, or None."""

    async def from_upstream(self, data: str | bytes) -> None:
        """An upstream message, before the caller sees it (usage is counted here)."""

    async def close(self) -> None:
        """The session ended: count what it used."""


class SessionPolicy(Protocol):
    """Who a WebSocket session is, and its gate."""

    @property
    def auth(self) -> CallerAuth:
        """Member keys in, the account's key out."""

    async def secret_caller(self, route: str, token: str, fingerprint: str) -> Caller | None:
        """The caller behind an ephemeral token, or None for one this policy did not mint."""

    def gate(self, caller: Caller, route: str, models: list[str]) -> SessionGate:
        """The gate of one session by an admitted caller."""


class CallGate(Protocol):
    """One gRPC call under a policy: checked before it goes upstream, counted at its end."""

    @property
    def member(self) -> Member: ...

    async def admit(self, request: object) -> None:
        """The call's first message; ProxyError refuses the call."""

    async def answer(self, message: bytes) -> None:
        """An upstream answer message, before the caller sees it."""

    async def finish(self) -> None:
        """The call ended: count what it used."""


class CallPolicy(Protocol):
    """Who a gRPC call is, its gate, and how a refusal reads in gRPC."""

    @property
    def auth(self) -> CallerAuth:
        """Member keys in, the account's key out."""

    def gate(self, caller: Caller, method: str) -> CallGate:
        """The gate of one call by an admitted caller."""

    def status_of(
        self, error: ProxyError
    ) -> tuple[grpc.StatusCode, str, list[tuple[str, str | bytes]]]:
        """The gRPC code, details and trailers that say what `error` says on HTTP."""
