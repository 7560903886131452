"""The console's parts without a browser: sessions, failure records, charts, CSV cells."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from grok_proxy.console.charts import breakdown_svg, timeline_svg
from grok_proxy.console.reports import Totals, Usage
from grok_proxy.console.routes import spreadsheet_safe
from grok_proxy.console.session import SESSION_SECONDS, Sessions
from grok_proxy.teams.activity import FAILURES_KEPT, Activity, error_code, failures, usage_minutes
from grok_proxy.teams.store import Store, engine_url


def test_a_session_is_signed_expires_and_ends_with_the_token() -> None:
    sessions = Sessions("admin-token-1")
    cookie = sessions.issue(now=1000.0)
    assert "admin-token-1" not in cookie
    nonce = sessions.nonce_of(cookie, now=1001.0)
    assert nonce is not None
    assert sessions.nonce_of(cookie, now=1000.0 + SESSION_SECONDS + 1) is None
    expires, rest = cookie.split(".", 1)
    assert sessions.nonce_of(f"{int(expires) + 3600}.{rest}", now=1001.0) is None  # tampered
    assert Sessions("admin-token-2").nonce_of(cookie, now=1001.0) is None
    # The CSRF token belongs to one session.
    other = sessions.nonce_of(sessions.issue(now=1000.0), now=1001.0)
    assert other is not None and sessions.csrf_for(nonce) != sessions.csrf_for(other)


def test_error_codes_are_read_without_the_message() -> None:
    envelope = b'{"error": {"message": "Budget used up", "code": "budget_exceeded"}}'
    assert error_code(envelope) == "budget_exceeded"
    anthropic = b'{"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}'
    assert error_code(anthropic) == "rate_limit_error"
    xai = b'{"code": "Client specified an invalid argument", "error": "secret prompt text"}'
    assert error_code(xai) == "Client specified an invalid argument"
    assert error_code(b'{"error": "secret prompt text"}') is None
    assert error_code(b"<html>bad gateway</html>") is None


def test_failures_keep_the_newest_few_per_member_and_minutes_expire(tmp_path: Path) -> None:
    async def check() -> None:
        store = Store(engine_url("", str(tmp_path)))
        await store.migrate()
        activity = Activity(store)
        for index in range(FAILURES_KEPT + 5):
            activity.failed("m1", 429, "rate_limit_exceeded", f"model-{index}")
        activity.failed("m2", 500, None, None)
        now = datetime.now(UTC)
        activity.count("m1", "grok-4", (1, 10, 5, 0, 0, 700), now)
        activity.count("m1", "grok-4", (1, 10, 5, 0, 0, 700), now)
        activity.count("m1", "grok-4", (1, 1, 1, 0, 0, 1), now - timedelta(hours=26))
        await activity.flush()
        for index in range(3):  # a second batch: the oldest rows make way
            activity.failed("m1", 403, "model_not_allowed", f"late-{index}")
        await activity.flush()
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(failures))).mappings().all()
            minutes = (await conn.execute(sa.select(usage_minutes))).mappings().all()
        await store.aclose()
        m1 = [row["model"] for row in rows if row["member_id"] == "m1"]
        assert len(m1) == FAILURES_KEPT
        assert m1[-3:] == ["late-0", "late-1", "late-2"]
        assert f"model-{FAILURES_KEPT + 4}" in m1 and "model-0" not in m1
        assert [(row["status"], row["code"]) for row in rows if row["member_id"] == "m2"] == [
            (500, None)
        ]
        # The minute of 26 hours ago was pruned; this minute's two requests are one row.
        assert [(row["requests"], row["prompt_tokens"], row["cost_nanos"]) for row in minutes] == [
            (2, 20, 1400)
        ]

    asyncio.run(check())


def test_charts_escape_names_and_write_values() -> None:
    report = Usage("day", ["10:00", "11:00"], [Totals(), Totals()])
    report.add(1, "<img src=x onerror=alert(1)>", "grok-4", (3, 100, 50, 0, 0, 1_234_000_000))
    svg = breakdown_svg(report, "member", "cost")
    assert "<img" not in svg
    assert "&lt;img src=x onerror=alert(1)&gt;" in svg
    assert "$1.2340" in svg
    assert "total 3" in timeline_svg(report, "requests")
    assert "150" in breakdown_svg(report, "model", "tokens")
    # The console's CSP (no inline style) also governs a chart opened on its own.
    assert "style=" not in svg + timeline_svg(report, "cost")


def test_csv_cells_never_start_a_formula() -> None:
    assert spreadsheet_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert spreadsheet_safe("@SUM(A1)") == "'@SUM(A1)"
    assert spreadsheet_safe("alice") == "alice"
    assert spreadsheet_safe(12) == 12
