"""The dashboard and GraphiQL in a real browser (headless Chromium through Selenium).

What a viewer would notice: a package's `home` of `javascript:...` is plain text that does
nothing when clicked, the Content-Security-Policy stops injected inline scripts while the
pages work under it, and GraphiQL loads and runs queries without any network beyond this
machine. Chromium resolves every host name except loopback to "not found", so a page that
needs a CDN breaks here exactly as it would on an offline host.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); skipped without.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from graphconda.app import create_app
from graphconda.services import jobs
from graphconda.services.authz import SYSTEM
from graphconda.services.context import Services
from graphconda.settings import Settings
from tests.fixtures.server import LiveServer, run_live_server
from tests.helpers.channels import owner_key_for_main
from tests.helpers.packages import build_package, sha256_of

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
EVIL_HOME = "javascript:fetch('/pwned-by-home').then(() => { document.title = 'pwned' })"


class RequestLog:
    """Records the path of every HTTP request the live server sees."""

    def __init__(self, app: ASGIApp, paths: list[str]) -> None:
        self.app, self.paths = app, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     # Only loopback resolves: a page that needs the internet fails to load here.
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: WebDriver) -> Iterator[WebDriver]:
    """The shared browser, with no cookies and empty logs from earlier tests."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's, not only the current page's
    browser.get_log("performance")
    browser.get_log("browser")
    yield browser
    browser.get("about:blank")


@pytest.fixture
def requests_seen() -> list[str]:
    return []


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # dev: /auth/dev/login/<user>, a browser session without a provider; no job runs on its own here.
    return {"server": {"dev": True}, "jobs": {"embedded_runner": False, "embedded_scheduler": False}}


@pytest.fixture
def server(settings: Settings, requests_seen: list[str]) -> Iterator[LiveServer]:
    app = create_app(settings)
    app.add_middleware(RequestLog, paths=requests_seen)
    yield from run_live_server(app)


def wait_for(driver: WebDriver, script: str, timeout: float = 20) -> Any:
    """Poll a JavaScript expression until it is truthy; its value."""
    try:
        return WebDriverWait(driver, timeout).until(lambda d: d.execute_script(f"return {script}"))
    except TimeoutException:
        logs = driver.get_log("browser")
        raise AssertionError(f"timed out waiting for {script}; browser console: {logs}") from None


def network_urls(driver: WebDriver) -> list[str]:
    """Every URL the page requested since the last call (Chrome's DevTools network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.append(message["params"].get("request", {}).get("url") or message["params"].get("url"))
    return urls


def upload(server: LiveServer, key: str, channel: str, paths: list[Path]) -> None:
    with httpx2.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as http:
        for path in paths:
            response = http.post(f"/api/channels/{channel}/upload/{path.name}?sha256={sha256_of(path)}",
                                 content=path.read_bytes())
            assert response.status_code == 201, response.text


@pytest.fixture
async def published(server: LiveServer, services: Services, tmp_path: Path) -> LiveServer:
    """Channel `main` with `evil` (home: a javascript: URL) and `good` (home: an https URL)."""
    key = await owner_key_for_main(services)
    paths = [
        build_package(tmp_path, "evil", "1.0", "0", about={"home": EVIL_HOME, "summary": "a trap"}),
        build_package(tmp_path, "good", "1.0", "0", about={"home": "https://example.org/good", "summary": "fine"}),
    ]
    await anyio.to_thread.run_sync(upload, server, key, "main", paths)
    return server


FIND_TEXT = ("return [...document.querySelectorAll('main *')]"
             ".find(e => !e.children.length && e.textContent === arguments[0])")


def test_javascript_home_is_inert_text(published: LiveServer, page: WebDriver, requests_seen: list[str]) -> None:
    page.get(f"{published.url}/#/channel/main/evil")
    wait_for(page, "document.querySelector('main h1')?.textContent === 'evil 1.0'")
    home = page.execute_script(FIND_TEXT, EVIL_HOME)
    assert home is not None, "the home URL is not shown"
    assert page.execute_script("return arguments[0].closest('a')", home) is None  # text, not a link
    assert page.execute_script("return [...document.links].filter(a => !/^(https?:|#)/.test(a.href)).length") == 0
    home.click()
    # Go elsewhere and wait for that page: a request made by the click would have come first.
    page.get(f"{published.url}/#/channel/main/good")
    wait_for(page, "document.querySelector('main h1')?.textContent === 'good 1.0'")
    assert page.title == "graphconda"
    assert not [p for p in requests_seen if "pwned" in p]
    # An http(s) home is a real link, which tells the browser not to pass on our page.
    link = page.execute_script(FIND_TEXT, "https://example.org/good")
    assert link.tag_name == "a" and link.get_attribute("href") == "https://example.org/good"
    assert set(link.get_attribute("rel").split()) >= {"noopener", "noreferrer"}


INJECT_INLINE_SCRIPT = """
const done = arguments[arguments.length - 1];
window.__injected = false;
document.addEventListener("securitypolicyviolation",
  (e) => done({ran: window.__injected, blocked: e.effectiveDirective}));
const script = document.createElement("script");
script.textContent = "window.__injected = true";
document.body.append(script);  // an inline script runs right here, if it may
if (window.__injected) done({ran: true, blocked: null});
"""


def test_csp_blocks_injected_inline_script_and_the_dashboard_works(published: LiveServer, page: WebDriver) -> None:
    page.get(f"{published.url}/")
    wait_for(page, "document.querySelector('main table') !== null")
    assert page.find_element(By.CSS_SELECTOR, "main h1").text == "Channels (1)"
    assert "main" in page.find_element(By.CSS_SELECTOR, "main table").text
    page.set_script_timeout(10)
    assert page.execute_async_script(INJECT_INLINE_SCRIPT) == {"ran": False, "blocked": "script-src-elem"}
    # The search works under the policy too.
    search = page.find_element(By.ID, "search")
    search.send_keys("goo\n")
    wait_for(page, "document.querySelector('main h1')?.textContent === 'Search: goo'")
    wait_for(page, "document.querySelector('main tbody')?.textContent.includes('good')")
    assert all(url.startswith(published.url) for url in network_urls(page))


def login(page: WebDriver, server: LiveServer, username: str = "dev") -> None:
    page.get(f"{server.url}/auth/dev/login/{username}")
    assert any(c["name"] == "graphconda_session" for c in page.get_cookies()), page.page_source[:500]


def csp_violations(driver: WebDriver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("source") == "security"]


def test_graphiql_runs_a_query_as_the_logged_in_user_offline(published: LiveServer, page: WebDriver) -> None:
    login(page, published)
    page.get(f"{published.url}/graphql")
    wait_for(page, "document.querySelector('.graphiql-execute-button') !== null")
    page.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()  # the default query
    wait_for(page, "document.querySelector('.result-window')?.textContent.includes('\"username\": \"dev\"')")
    result = page.find_element(By.CSS_SELECTOR, ".result-window").text
    assert '"serverRole": "OWNER"' in result and '"name": "main"' in result
    # Dialogs work too (they add <style> elements: allowed for styles, never for scripts).
    page.find_element(By.CSS_SELECTOR, "button[aria-label='Open settings dialog']").click()
    wait_for(page, "document.querySelector('.graphiql-dialog') !== null")
    urls = network_urls(page)
    assert any(url.endswith("/graphql") for url in urls)
    assert all(url.startswith(published.url) or url.startswith("data:") for url in urls), urls
    assert csp_violations(page) == []


async def test_graphiql_runs_a_subscription_over_the_websocket(published: LiveServer, page: WebDriver,
                                                               services: Services) -> None:
    """GraphiQL sends subscriptions over graphql-ws on /graphql: the policy and the session allow it."""
    run = str((await jobs.run_job(services, SYSTEM, "reindex", channel="main")).id)  # as the server would
    login(page, published)
    page.get(f"{published.url}/graphql")
    wait_for(page, "document.querySelector('.graphiql-query-editor .CodeMirror') !== null")
    subscription = f'subscription {{ jobUpdates(id: "{run}") {{ id kind channel {{ name }} }} }}'
    editor = "document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror"
    page.execute_script(f"{editor}.setValue(arguments[0])", subscription)
    # GraphiQL parses the editor 100 ms after a change; only then does it know to use the websocket.
    wait_for(page, f"{editor}.documentAST?.definitions[0]?.operation === 'subscription'")
    page.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
    wait_for(page, "document.querySelector('.result-window')?.textContent.includes('\"jobUpdates\"')")
    result = page.find_element(By.CSS_SELECTOR, ".result-window").text
    assert f'"id": "{run}"' in result and '"name": "main"' in result, result
    assert any(url.startswith(published.url.replace("http://", "ws://")) for url in network_urls(page))
    assert csp_violations(page) == []

