"""The team console in a real browser: headless Chromium driven by Selenium (Debian's
chromium-driver, never a downloaded one), in front of the real proxy and the simulator."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.test_teams import ADMIN_TOKEN, GROK_4_PRICE, SERVER_KEY, cli
from tests.postgres import postgres_bin, postgres_cluster
from tests.processes import Proxy, Simulator, free_port, proxy

CHROMEDRIVER = "/usr/bin/chromedriver"
XSS_NAME = "<img src=x onerror=alert(1)>"
# Dollars per million tokens in, cached in, out: the team's price of grok-4.
PRICE = "/".join(str(p) for p in GROK_4_PRICE)
# Set to a path to save the screenshot docs/teams.md shows (docs/console.png).
SCREENSHOT = os.environ.get("GROK_PROXY_CONSOLE_SCREENSHOT", "")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]  # Chromium


def team_settings(data_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "grok_proxy_data_dir": str(data_dir),
        "xai_api_key": SERVER_KEY,
        "team_refresh_seconds": "0.2",
        "model_prices": f"grok-4={PRICE}",
        **extra,
    }


@pytest.fixture(scope="module")
def team(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A shared proxy with an admin token (the console is on)."""
    settings = team_settings(
        tmp_path_factory.mktemp("console-team"), grok_proxy_admin_token=ADMIN_TOKEN
    )
    # As docs/teams.md says: the first member, added with the CLI, makes the proxy shared.
    cli(settings, "members", "add", "lead")
    with proxy(sim.base_url, 1, **settings) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium, fresh profile, no network of its own beyond what pages ask."""
    chromium = shutil.which("chromium")
    if chromium is None or not Path(CHROMEDRIVER).exists():
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,1600",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    # The driver's path is given: Selenium Manager (which would download one) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, condition: Any, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def by_id(driver: Any, element_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def visible(element_id: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    return expected_conditions.visibility_of_element_located((By.ID, element_id))


def sign_in(driver: Any, team: Proxy) -> None:
    driver.delete_all_cookies()
    driver.get(f"{team.url}/console")
    wait_for(driver, visible("sign-in"))
    by_id(driver, "token").send_keys(ADMIN_TOKEN)
    by_id(driver, "sign-in-form").submit()
    wait_for(driver, visible("app"))


def add_member(driver: Any, name: str, **limits: str) -> str:
    """Add a member through the page's form; the key it shows once."""
    from selenium.webdriver.common.by import By

    details = by_id(driver, "add-panel")
    if details.get_attribute("open") is None:
        details.find_element(By.TAG_NAME, "summary").click()
    form = by_id(driver, "add-form")
    form.find_element(By.NAME, "name").send_keys(name)
    for field, value in limits.items():
        form.find_element(By.NAME, field).send_keys(value)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, visible("new-key"))
    wait_for(driver, lambda d: by_id(d, "new-key-name").text == name)
    key: str = by_id(driver, "new-key-value").get_attribute("value")
    return key


def table_rows(driver: Any, table_id: str) -> list[list[str]]:
    """The text of each body cell, read in one go (the page redraws its tables)."""
    rows: list[list[str]] = driver.execute_script(
        "return [...document.getElementById(arguments[0]).tBodies[0].rows]"
        ".map(row => [...row.cells].map(cell => cell.innerText));",
        table_id,
    )
    return rows


def refresh(driver: Any) -> None:
    """Click Refresh and wait until every view has reloaded."""
    before = driver.execute_script("return document.body.dataset.loaded || ''")
    by_id(driver, "refresh").click()
    wait_for(
        driver, lambda d: d.execute_script("return document.body.dataset.loaded || ''") != before
    )


def fetch_text(driver: Any, url: str) -> str:
    """What the page's own fetch gets from `url` (with its session cookie)."""
    text: str = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text()).then(done, e => done(String(e)));",
        url,
    )
    return text


def session_cookie(team: Proxy) -> tuple[httpx.Client, str]:
    """An HTTP client signed in to the console, and its CSRF token."""
    client = httpx.Client(base_url=team.url, timeout=15)
    answer = client.post("/console/session", json={"token": ADMIN_TOKEN})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf"]


def member_names(team: Proxy) -> list[str]:
    answer = httpx.get(
        f"{team.url}/admin/members", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    return [member["name"] for member in answer.json()["data"]]


def test_a_lead_onboards_a_developer_and_sees_the_spend(browser: Any, team: Proxy) -> None:
    sign_in(browser, team)
    cookie = browser.get_cookie("grok_proxy_console")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert ADMIN_TOKEN not in cookie["value"]

    shown = add_member(browser, "dev-one", dollars_per_month="5")
    assert shown.startswith("gpk-")
    # Copy: the key the developer gets is the one on the clipboard.
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": team.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    by_id(browser, "copy-key").click()
    wait_for(browser, lambda d: by_id(d, "message").text == "Key copied.")
    key: str = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, e => done(String(e)));"
    )
    assert key == shown
    assert ["dev-one", "active", "1"] in [r[:3] for r in table_rows(browser, "member-table")]

    client = openai.OpenAI(api_key=key, base_url=f"{team.url}/v1")
    completion = client.chat.completions.create(
        model="grok-4", messages=[{"role": "user", "content": "hello from the console test"}]
    )
    assert completion.usage is not None
    usage = completion.usage
    # The console shows what xAI reported for the request (1 USD = 1e10 ticks).
    cost = getattr(usage, "cost_in_usd_ticks", 0) / 1e10
    assert cost > 0

    refresh(browser)
    wait_for(
        browser, lambda d: any(r[:2] == ["dev-one", "grok-4"] for r in table_rows(d, "usage-table"))
    )
    row = next(r for r in table_rows(browser, "usage-table") if r[0] == "dev-one")
    assert row[2] == "1"  # requests
    assert int(row[5]) == usage.prompt_tokens + usage.completion_tokens
    assert float(row[6]) == pytest.approx(cost, abs=1e-6)

    # The charts show the request and its cost.
    chart = fetch_text(browser, by_id(browser, "chart-member").get_attribute("src"))
    assert "dev-one" in chart
    assert f"${cost:,.4f}" in chart
    timeline = fetch_text(browser, by_id(browser, "chart-timeline").get_attribute("src"))
    assert f"total ${cost:,.4f}" in timeline
    # The budget left, and the CSV export of the table.
    budget = next(r for r in table_rows(browser, "budget-table") if r[0] == "dev-one")
    assert budget[1] == "dollars per month"
    assert float(budget[4]) == pytest.approx(5 - cost, abs=1e-4)
    csv_text = fetch_text(browser, by_id(browser, "csv").get_attribute("href"))
    assert csv_text.splitlines()[0].startswith("member,model,requests")
    assert any(line.startswith("dev-one,grok-4,1,") for line in csv_text.splitlines())

    # The same request through the last-hour and last-30-days windows.
    for window in ("hour", "month"):
        browser.find_element("css selector", f"button[data-window={window}]").click()
        wait_for(
            browser,
            lambda d: any(
                r[:3] == ["dev-one", "grok-4", "1"] for r in table_rows(d, "usage-table")
            ),
        )
    if SCREENSHOT:
        browser.find_element("css selector", "button[data-window=day]").click()
        wait_for(browser, lambda d: table_rows(d, "usage-table")[0][0] != "")
        browser.set_window_size(1000, 1800)
        browser.save_screenshot(SCREENSHOT)


def test_disable_rotate_and_limits_go_through_the_admin_api(browser: Any, team: Proxy) -> None:
    from selenium.webdriver.common.by import By

    sign_in(browser, team)
    key = add_member(browser, "dev-two")
    row = by_id(browser, "member-table").find_element(By.CSS_SELECTOR, "tr[data-member='dev-two']")
    # Limits: the admin API's own validation and error reach the page.
    row.find_element(By.XPATH, ".//button[text()='Limits']").click()
    form = by_id(browser, "edit-form")
    form.find_element(By.NAME, "models").send_keys("grok-3*")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(
        browser,
        lambda d: (
            "models=grok-3*" in " ".join(cell for r in table_rows(d, "member-table") for cell in r)
        ),
    )
    client = openai.OpenAI(api_key=key, base_url=f"{team.url}/v1", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="grok-4", messages=[{"role": "user", "content": "x"}])
    # The refusal shows among the recent failures: status, code, model; never the key.
    refresh(browser)
    wait_for(
        browser,
        lambda d: any(
            r[1:] == ["dev-two", "403", "model_not_allowed", "grok-4"]
            for r in table_rows(d, "failure-table")
        ),
    )
    assert key not in browser.page_source

    # A new key replaces the old one.
    row = by_id(browser, "member-table").find_element(By.CSS_SELECTOR, "tr[data-member='dev-two']")
    row.find_element(By.XPATH, ".//button[text()='New key']").click()
    browser.switch_to.alert.accept()
    wait_for(browser, lambda d: by_id(d, "new-key-value").get_attribute("value") not in ("", key))
    new_key = by_id(browser, "new-key-value").get_attribute("value")
    models = httpx.get(f"{team.url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert models.status_code == 401
    models = httpx.get(f"{team.url}/v1/models", headers={"authorization": f"Bearer {new_key}"})
    assert models.status_code == 200
    # Disabled: the key stops working.
    row = by_id(browser, "member-table").find_element(By.CSS_SELECTOR, "tr[data-member='dev-two']")
    row.find_element(By.XPATH, ".//button[text()='Disable']").click()
    wait_for(
        browser, lambda d: ["dev-two", "disabled"] in [r[:2] for r in table_rows(d, "member-table")]
    )
    models = httpx.get(f"{team.url}/v1/models", headers={"authorization": f"Bearer {new_key}"})
    assert models.status_code == 401

    # A wrong limit is refused by the admin API, and its message is shown.
    row = by_id(browser, "member-table").find_element(By.CSS_SELECTOR, "tr[data-member='dev-two']")
    row.find_element(By.XPATH, ".//button[text()='Limits']").click()
    form = by_id(browser, "edit-form")
    browser.execute_script("arguments[0].type = 'text'", form.find_element(By.NAME, "rpm"))
    form.find_element(By.NAME, "rpm").send_keys("-3")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, lambda d: "invalid_value" in by_id(d, "message").text)
    assert "rpm must be between 0 and" in by_id(browser, "message").text


def test_revoke_and_delete_go_through_the_admin_api(browser: Any, team: Proxy) -> None:
    from selenium.webdriver.common.by import By

    def member_row() -> Any:
        table = by_id(browser, "member-table")
        return table.find_element(By.CSS_SELECTOR, "tr[data-member='dev-four']")

    def models_with(key: str) -> int:
        headers = {"authorization": f"Bearer {key}"}
        return httpx.get(f"{team.url}/v1/models", headers=headers).status_code

    sign_in(browser, team)
    key = add_member(browser, "dev-four")
    assert models_with(key) == 200
    # Revoked: the key stops working and no new one is made; the member stays, active.
    member_row().find_element(By.XPATH, ".//button[text()='Revoke keys']").click()
    browser.switch_to.alert.accept()
    wait_for(browser, lambda d: "1 key(s) of dev-four revoked" in by_id(d, "message").text)
    wait_for(
        browser,
        lambda d: ["dev-four", "active", "0"] in [r[:3] for r in table_rows(d, "member-table")],
    )
    assert models_with(key) == 401
    # "New key" gives it one again.
    member_row().find_element(By.XPATH, ".//button[text()='New key']").click()
    browser.switch_to.alert.accept()
    wait_for(browser, lambda d: by_id(d, "new-key-value").get_attribute("value") not in ("", key))
    new_key = by_id(browser, "new-key-value").get_attribute("value")
    assert models_with(new_key) == 200
    # Deleted: gone from the list, its key refused, its name free for someone new.
    member_row().find_element(By.XPATH, ".//button[text()='Delete']").click()
    browser.switch_to.alert.accept()
    wait_for(
        browser,
        lambda d: "dev-four" not in [r[0] for r in table_rows(d, "member-table") if r],
    )
    assert models_with(new_key) == 401
    again = add_member(browser, "dev-four")
    assert models_with(again) == 200


@contextmanager
def phone_screen(driver: Any) -> Iterator[None]:
    """The page as a phone shows it: 390 CSS pixels wide, touch, mobile viewport."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_on_a_phone_the_page_fits_sorts_and_acts(browser: Any, team: Proxy) -> None:
    from selenium.webdriver.common.by import By

    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    keys = {}
    for name, requests in (("phone-few", 1), ("phone-many", 3)):
        answer = httpx.post(f"{team.url}/admin/members", headers=admin, json={"name": name})
        keys[name] = answer.json()["key"]
        for _ in range(requests):
            chat = httpx.post(
                f"{team.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {keys[name]}"},
                json={"model": "grok-4", "messages": [{"role": "user", "content": "x"}]},
            )
            assert chat.status_code == 200
    with phone_screen(browser):
        sign_in(browser, team)
        wait_for(browser, lambda d: any(r[0] == "phone-many" for r in table_rows(d, "usage-table")))
        # Nothing makes the page wider than the phone: wide tables scroll inside their box.
        width = browser.execute_script("return document.documentElement.clientWidth")
        assert width == 390
        assert browser.execute_script("return document.documentElement.scrollWidth") == width
        for chart in ("chart-timeline", "chart-member", "chart-model"):
            assert by_id(browser, chart).rect["width"] <= width

        # Sorting on Requests puts the busier member first, and clicking again reverses it.
        def order() -> list[str]:
            names = [r[0] for r in table_rows(browser, "usage-table")]
            return [name for name in names if name.startswith("phone-")]

        header = by_id(browser, "usage-table").find_element(
            By.CSS_SELECTOR, "th[data-key=requests]"
        )
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", header)
        header.click()
        assert header.get_attribute("aria-sort") == "descending"
        assert order() == ["phone-many", "phone-few"]
        header.click()
        assert order() == ["phone-few", "phone-many"]

        # The row's buttons work at this size: disabled, the key stops; enabled, it works.
        def press(label: str, state: str) -> int:
            row = by_id(browser, "member-table").find_element(
                By.CSS_SELECTOR, "tr[data-member='phone-few']"
            )
            button = row.find_element(By.XPATH, f".//button[text()='{label}']")
            # In view below the sticky nav (Selenium would scroll it to the very top, under it).
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            button.click()
            wait_for(
                browser,
                lambda d: ["phone-few", state] in [r[:2] for r in table_rows(d, "member-table")],
            )
            models = httpx.get(
                f"{team.url}/v1/models", headers={"authorization": f"Bearer {keys['phone-few']}"}
            )
            return models.status_code

        assert press("Disable", "disabled") == 401
        assert press("Enable", "active") == 200
        assert browser.execute_script("return document.documentElement.scrollWidth") == width


def test_a_member_named_like_markup_is_shown_as_text(browser: Any, team: Proxy) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    sign_in(browser, team)
    key = add_member(browser, XSS_NAME, models="grok-4")
    assert by_id(browser, "new-key-name").text == XSS_NAME
    # A request and a refused one: the name shows in the usage and among the failures.
    for model, status in (("grok-4", 200), ("grok-3", 403)):
        answer = httpx.post(
            f"{team.url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": "x"}]},
        )
        assert answer.status_code == status
    browser.refresh()
    wait_for(browser, visible("app"))
    wait_for(browser, lambda d: any(r[1] == XSS_NAME for r in table_rows(d, "failure-table")))
    assert [XSS_NAME, "active"] in [r[:2] for r in table_rows(browser, "member-table")]
    assert any(r[0] == XSS_NAME for r in table_rows(browser, "usage-table"))
    # Shown as text: no element was made of it, and no script ran.
    assert browser.find_elements(By.CSS_SELECTOR, "main img[src='x']") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    chart = fetch_text(browser, by_id(browser, "chart-member").get_attribute("src"))
    assert "&lt;img src=x onerror=alert(1)&gt;" in chart
    assert "<img" not in chart


def test_the_page_is_locked_down(team: Proxy) -> None:
    page = httpx.get(f"{team.url}/console")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in page.text and "onclick" not in page.text
    # Everything it loads ships with the package (no CDN).
    assert httpx.get(f"{team.url}/console/static/console.js").status_code == 200
    assert "http" not in httpx.get(f"{team.url}/console/static/console.js").text.split("\n", 2)[2]
    # Nothing is read or changed without a session; a wrong token gets none.
    assert httpx.get(f"{team.url}/console/api/usage").status_code == 401
    assert httpx.get(f"{team.url}/console/api/admin/members").status_code == 401
    wrong = httpx.post(f"{team.url}/console/session", json={"token": "not-the-token"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers


def test_a_state_change_without_the_csrf_token_is_refused(team: Proxy) -> None:
    client, csrf = session_cookie(team)
    try:
        for headers in (
            {},  # the cookie alone
            {"x-csrf-token": "0" * 64},
            {"x-csrf-token": csrf, "origin": "http://evil.example"},
            {"x-csrf-token": csrf, "sec-fetch-site": "cross-site"},
        ):
            refused = client.post(
                "/console/api/admin/members", json={"name": "csrf-victim"}, headers=headers
            )
            assert refused.status_code == 403, headers
            assert refused.json()["error"]["code"] == "csrf_failed"
        assert "csrf-victim" not in member_names(team)
        # A read needs no token; the same change with it goes through the admin API.
        assert client.get("/console/api/admin/members").status_code == 200
        made = client.post(
            "/console/api/admin/members", json={"name": "csrf-ok"}, headers={"x-csrf-token": csrf}
        )
        assert made.status_code == 201
        assert "csrf-ok" in member_names(team)
        # The admin API's own errors come back as they are.
        wrong = client.post(
            "/console/api/admin/members",
            json={"name": "csrf-wrong", "rpm": -1},
            headers={"x-csrf-token": csrf},
        )
        assert wrong.status_code == 422
        assert wrong.json()["error"]["code"] == "invalid_value"
    finally:
        client.close()


def test_failures_list_status_code_and_model_never_a_key(team: Proxy) -> None:
    key = httpx.post(
        f"{team.url}/admin/members",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        json={"name": "streamer", "rpm": 2, "models": ["grok-4*"]},
    ).json()["key"]
    client = openai.OpenAI(api_key=key, base_url=f"{team.url}/v1", max_retries=0)
    # A stream the upstream cuts after three of six chunks: the caller sees an error...
    with pytest.raises(openai.APIError):
        stream = client.chat.completions.create(
            model="grok-4@chunks=6,cut=3",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
        )
        for _chunk in stream:
            pass
    # ...and a request beyond its limit of two a minute is refused.
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="grok-4", messages=[{"role": "user", "content": "x"}])
        client.chat.completions.create(model="grok-4", messages=[{"role": "user", "content": "x"}])
    session, _csrf = session_cookie(team)
    try:
        answer = session.get("/console/api/failures")
    finally:
        session.close()
    assert answer.status_code == 200
    mine = [row for row in answer.json()["data"] if row["member"] == "streamer"]
    assert [(row["status"], row["code"], row["model"]) for row in mine] == [
        (429, "rate_limit_exceeded", "grok-4"),
        (200, "stream_cut", "grok-4@chunks=6,cut=3"),
    ]
    assert key not in answer.text


@contextmanager
def attacker_site(page: str) -> Iterator[str]:
    """Another site (localhost, not 127.0.0.1) serving one page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_cross_site_form_cannot_act_for_a_signed_in_lead(browser: Any, team: Proxy) -> None:
    sign_in(browser, team)
    page = (
        "<form id=f method=post enctype=text/plain "
        f"action='{team.url}/console/api/admin/members'>"
        '<input name=\'{"name":"forged","x":"\' value=\'"}\'></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    with attacker_site(page) as url:
        browser.get(url)
        wait_for(browser, lambda d: "/console/api/admin/members" in d.current_url)
        refused = browser.find_element("tag name", "body").text
    assert "forged" not in member_names(team)
    assert "console_sign_in" in refused or "csrf_failed" in refused


def test_the_console_is_off_without_a_team_or_an_admin_token(
    sim: Simulator, tmp_path: Path
) -> None:
    paths = ("/console", "/console/static/console.js", "/console/session", "/console/api/usage")
    with proxy(sim.base_url) as solo:
        for path in paths:
            assert httpx.get(f"{solo.url}{path}").status_code == 404, path
    with proxy(
        sim.base_url, 1, **team_settings(tmp_path, grok_proxy_api_keys="k-one-2f8a")
    ) as shared:
        for path in paths:
            assert httpx.get(f"{shared.url}{path}").status_code == 404, path
        assert httpx.post(f"{shared.url}/console/session", json={"token": ""}).status_code == 404


def test_the_reports_on_postgresql(sim: Simulator, tmp_path: Path) -> None:
    """The console's tables and queries on a PostgreSQL team database, not only SQLite."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl missing; .ci/run installs it)")
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        postgres_cluster() as url,
        proxy(
            sim.base_url,
            1,
            **team_settings(tmp_path, database_url=url, grok_proxy_admin_token=ADMIN_TOKEN),
        ) as running,
    ):
        key = httpx.post(
            f"{running.url}/admin/members",
            headers=admin,
            json={"name": "pg-dev", "models": ["grok-4"], "tokens_per_day": 100000},
        ).json()["key"]
        for model, status in (("grok-4", 200), ("grok-3", 403)):
            answer = httpx.post(
                f"{running.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": model, "messages": [{"role": "user", "content": "x"}]},
            )
            assert answer.status_code == status
        with httpx.Client(base_url=running.url, timeout=15) as session:
            assert session.post("/console/session", json={"token": ADMIN_TOKEN}).status_code == 200
            for window in ("hour", "day", "month"):
                rows = session.get(f"/console/api/usage?window={window}").json()["data"]
                assert [(r["member"], r["model"], r["requests"]) for r in rows] == [
                    ("pg-dev", "grok-4", 1)
                ]
            tokens = rows[0]["tokens"]
            assert tokens > 0
            budget = session.get("/console/api/budgets").json()["data"]
            assert [(b["member"], b["budget"], b["used"]) for b in budget] == [
                ("pg-dev", "tokens_per_day", tokens)
            ]
            failures = session.get("/console/api/failures").json()["data"]
            assert [(f["member"], f["status"], f["code"], f["model"]) for f in failures] == [
                ("pg-dev", 403, "model_not_allowed", "grok-3")
            ]
            chart = session.get("/console/chart/member.svg?window=hour&measure=tokens")
            assert chart.status_code == 200
            assert f"{tokens:,}" in chart.text
