"""The dashboard's pages in a real browser (headless Chromium through Selenium) against a live server.

What users do by clicking: browse and search anonymously and page past 100 packages (URL
bookmarkable, back button works), sign in with the dev login and out, create a channel,
upload a real package through GraphQL multipart, add and remove a member (errors shown
next to the form), create a scoped API key (its secret shown once) and revoke it, start a
mirror sync against a loopback upstream and watch its live progress reach done; an
outsider does not see a private channel. Layout checks at 1280 and 390 px: nothing wider
than the window, every control labelled. Set GRAPHCONDA_SCREENSHOTS=<dir> to save the
screenshots the README shows (docs/screenshots).

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); skipped without.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from sqlalchemy import func, select

from graphconda.db.models import DownloadEvent
from graphconda.services import metrics
from graphconda.services.authz import Role
from graphconda.services.context import Services
from tests.fixtures.server import LiveServer
from tests.fixtures.upstreams import StaticServer, place, rattler_index
from tests.helpers.channels import make_channel, make_user, owner_key_for_main
from tests.helpers.packages import build_package
from tests.http import test_web_browser as base
from tests.http.test_web_browser import login, upload, wait_for

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = pytest.mark.slow

# The shared browser and live server of the GraphiQL/security browser tests.
browser, page, server, requests_seen = base.browser, base.page, base.server, base.requests_seen
DASH = "\u2013"  # the en dash of "Showing 1\u201350"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The runner on (mirror syncs run in the server); no scheduler, so no run starts on its own.
    # Download counts are written every 0.1 s (the chart test waits for them).
    return {"server": {"dev": True}, "jobs": {"embedded_runner": True, "embedded_scheduler": False},
            "metrics": {"flush_seconds": 0.1}}


def text_of(driver: WebDriver, selector: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, selector).text)


def heading_is(driver: WebDriver, text: str) -> None:
    wait_for(driver, f"document.querySelector('main h1')?.textContent === {text!r}")


def showing(driver: WebDriver, text: str) -> None:
    wait_for(driver, f"document.querySelector('main .pager')?.textContent.includes({text!r})")


def fill(driver: WebDriver, form: str, label: str, value: str) -> None:
    """Type into the control of `form` whose <label> reads `label` (how a user finds it).

    Once more if the page re-rendered the form meanwhile (after a save), as a user would.
    """
    try:
        _fill(driver, form, label, value)
    except StaleElementReferenceException:
        _fill(driver, form, label, value)


def _fill(driver: WebDriver, form: str, label: str, value: str) -> None:
    control = driver.execute_script(
        "const form = document.querySelector(arguments[0]);"
        "const label = [...form.querySelectorAll('label')].find(l => l.textContent === arguments[1]);"
        "return label && document.getElementById(label.htmlFor);", form, label)
    assert control is not None, f"no control labelled {label!r} in {form}"
    if control.tag_name == "select":
        driver.execute_script("arguments[0].value = arguments[1]", control, value)
    else:
        control.clear()
        control.send_keys(value)


def submit(driver: WebDriver, form: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()


def unlabelled_controls(driver: WebDriver) -> list[str]:
    return list(driver.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))"
        ".map(e => e.outerHTML)"))


def overflow(driver: WebDriver) -> int:
    """How many pixels the page is wider than the window (0 when nothing needs sideways scrolling)."""
    return int(driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth"))


def screenshot(driver: WebDriver, name: str) -> None:
    directory = os.environ.get("GRAPHCONDA_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(directory) / f"{name}.png"))


@pytest.fixture
async def many(server: LiveServer, services: Services, tmp_path: Path) -> LiveServer:
    """Channel `main` with 105 packages p000..p104 (more than two pages of 50, past the server's 100)."""
    key = await owner_key_for_main(services)
    paths = [build_package(tmp_path, f"p{i:03d}", "1.0", "0", about={"summary": f"package number {i}"})
             for i in range(105)]
    await anyio.to_thread.run_sync(upload, server, key, "main", paths)
    return server


def test_anonymous_browsing_search_and_paging_past_100(many: LiveServer, page: WebDriver) -> None:
    page.get(f"{many.url}/")
    heading_is(page, "Channels (1)")
    wait_for(page, "document.getElementById('viewer')?.textContent === 'anonymous'")
    assert page.find_elements(By.CSS_SELECTOR, "form.dev-login") and not page.find_elements(By.ID, "sign-out")
    page.find_element(By.LINK_TEXT, "main").click()
    heading_is(page, "main")
    assert page.current_url.endswith("#/channel/main")
    showing(page, f"Showing 1{DASH}50 of 105 packages")
    page.find_element(By.LINK_TEXT, "Next page").click()
    showing(page, f"Showing 51{DASH}100 of 105 packages")
    assert "p050" in text_of(page, "table.packages") and "p049" not in text_of(page, "table.packages")
    page.find_element(By.LINK_TEXT, "Next page").click()
    showing(page, f"Showing 101{DASH}105 of 105 packages")
    assert "p104" in text_of(page, "table.packages")
    assert not page.find_elements(By.LINK_TEXT, "Next page")
    third = page.current_url
    page.back()
    showing(page, f"Showing 51{DASH}100 of 105 packages")
    # The URL is the page: opened afresh (a bookmark), it shows the same packages.
    page.get("about:blank")
    page.get(third)
    wait_for(page, "document.querySelector('table.packages')?.textContent.includes('p104')")
    # Filter within the channel, then search across channels.
    fill(page, "form[aria-label='Filter packages']", "Package name contains", "p07")
    submit(page, "form[aria-label='Filter packages']")
    wait_for(page, "document.querySelector('section.packages h2')?.textContent === 'Packages (10)'")
    search = page.find_element(By.ID, "search")
    search.send_keys("number 10\n")
    heading_is(page, "Search: number 10")
    wait_for(page, "document.querySelector('main tbody')?.textContent.includes('p100')")
    page.find_element(By.LINK_TEXT, "p100").click()
    heading_is(page, "p100 1.0")
    link = page.find_element(By.PARTIAL_LINK_TEXT, "p100-1.0-0")
    assert link.get_attribute("href").startswith(f"{many.url}/get/main/")
    assert unlabelled_controls(page) == []


def test_dev_login_channel_upload_members_and_sign_out(server: LiveServer, page: WebDriver, tmp_path: Path) -> None:
    page.get(f"{server.url}/")
    wait_for(page, "document.querySelector('form.dev-login') !== null")
    page.find_element(By.CSS_SELECTOR, "form.dev-login button").click()
    wait_for(page, "document.getElementById('viewer')?.textContent === 'signed in as dev'")
    # alice exists once she has signed in (the dev login creates users), in a client of her own.
    with httpx2.Client(base_url=server.url) as http:
        assert http.get("/auth/dev/login/alice").status_code in (200, 303)
    # Create a private channel.
    heading_is(page, "Channels (0)")
    form = "form.create-channel"
    fill(page, form, "Name", "team")
    fill(page, form, "Description", "our packages")
    page.find_element(By.CSS_SELECTOR, f"{form} input[type=checkbox]").click()
    submit(page, form)
    heading_is(page, "team")
    assert "private" in text_of(page, "main .badges")
    assert "/t/<API-KEY>/get/team" in text_of(page, "main section")
    # Upload a real package through the upload page (GraphQL multipart, as the file input gives it).
    package = build_package(tmp_path, "teamtool", "2.1", "0", about={"summary": "the team's tool"})
    page.get(f"{server.url}/#/upload?channel=team")
    heading_is(page, "Upload packages")
    page.find_element(By.ID, "upload-files").send_keys(str(package))
    wait_for(page, "document.querySelector('.uploads li')?.dataset.state", timeout=60)
    assert page.execute_script("return document.querySelector('.uploads li').dataset.state") == "done", \
        text_of(page, ".uploads")
    # The same file again: refused, with the reason next to that file.
    page.find_element(By.ID, "upload-files").send_keys(str(package))
    wait_for(page, "document.querySelectorAll('.uploads li')[1]?.dataset.state === 'error'", timeout=60)
    assert text_of(page, ".uploads li:nth-child(2) .upload-status")
    page.find_element(By.LINK_TEXT, "teamtool 2.1").click()
    heading_is(page, "teamtool 2.1")
    page.find_element(By.LINK_TEXT, "team").click()
    heading_is(page, "team")
    wait_for(page, "document.querySelector('table.packages')?.textContent.includes('teamtool')")
    # Members: an unknown user is refused next to the form; alice is added, then removed.
    form = "form.add-member"
    fill(page, form, "User name", "nobody-here")
    submit(page, form)
    wait_for(page, "document.querySelector('form.add-member .error')?.textContent.length > 0")
    fill(page, form, "User name", "alice")
    fill(page, form, "Role", "MAINTAINER")
    submit(page, form)
    wait_for(page, "document.querySelector('table.members')?.textContent.includes('alice')")
    assert "maintainer" in text_of(page, "table.members")
    page.find_element(By.CSS_SELECTOR, "form[aria-label='Remove alice'] button").click()
    wait_for(page, "!document.querySelector('table.members')?.textContent.includes('alice')")
    # Sign out: the header says so, and the private channel is gone for this browser.
    page.find_element(By.ID, "sign-out").click()
    wait_for(page, "document.getElementById('viewer')?.textContent === 'anonymous'")
    page.get(f"{server.url}/#/channel/team")
    wait_for(page, "document.querySelector('main .error')?.textContent.includes('not found')")


async def test_outsider_cannot_see_a_private_channel(server: LiveServer, page: WebDriver, services: Services) -> None:
    await make_channel(services, "secret", private=True)
    await make_channel(services, "open")
    login(page, server, "outsider")
    page.get(f"{server.url}/")
    await anyio.to_thread.run_sync(heading_is, page, "Channels (1)")
    assert "secret" not in text_of(page, "main")
    page.get(f"{server.url}/#/channel/secret")
    await anyio.to_thread.run_sync(wait_for, page,
                                   "document.querySelector('main .error')?.textContent.includes('not found')")


async def test_scoped_api_key_shown_once_then_revoked(server: LiveServer, page: WebDriver, services: Services) -> None:
    await make_channel(services, "main")
    await anyio.to_thread.run_sync(_key_shown_once_then_revoked, server, page)


def _key_shown_once_then_revoked(server: LiveServer, page: WebDriver) -> None:
    login(page, server, "dev")
    page.get(f"{server.url}/#/account")
    heading_is(page, "Account: dev")
    form = "form.create-key"
    fill(page, form, "Description", "ci uploads")
    fill(page, form, "Channel", "main")
    fill(page, form, "Role", "MAINTAINER")
    fill(page, form, "Expires on (UTC)", "12312099")  # a date input takes the digits of mm/dd/yyyy
    submit(page, form)
    wait_for(page, "document.querySelector('.new-secret code')?.textContent.length > 0"
                   " || document.querySelector('form.create-key .error')?.textContent")
    assert not text_of(page, "form.create-key .error")
    secret = text_of(page, ".new-secret code")
    page.execute_script("document.querySelector('section.api').scrollIntoView()")
    screenshot(page, "api-keys-1280")
    assert "maintainer on main" in text_of(page, "table.keys") and "2099" in text_of(page, "table.keys")
    with httpx2.Client(base_url=server.url, headers={"X-API-Key": secret}) as http:
        viewer = http.post("/graphql", json={"query": "{ viewer { username } }"}).json()["data"]["viewer"]
        assert viewer == {"username": "dev"}
        # Shown once: the page opened again has no secret, and no query can get it.
        page.refresh()
        heading_is(page, "Account: dev")
        assert secret not in page.page_source
        page.find_element(By.CSS_SELECTOR, "form[aria-label='Revoke key ci uploads'] button").click()
        wait_for(page, "document.querySelector('table.keys')?.textContent.includes('revoked')")
        assert http.post("/graphql", json={"query": "{ viewer { username } }"}).status_code == 401


async def test_mirror_sync_with_live_progress(server: LiveServer, page: WebDriver, tmp_path: Path) -> None:
    root = tmp_path / "upstream"
    place(root, [build_package(tmp_path / "b", name, "1.0", "0") for name in ("alpha", "beta", "gamma")])
    await rattler_index(root)
    with StaticServer(root) as upstream:
        await anyio.to_thread.run_sync(_create_mirror_and_sync, server, page, upstream.url)


def _create_mirror_and_sync(server: LiveServer, page: WebDriver, upstream: str) -> None:
    login(page, server, "dev")
    page.get(f"{server.url}/#/admin")
    heading_is(page, "Admin")
    form = "form.create-mirror"
    fill(page, form, "Name", "mir")
    fill(page, form, "Upstream channel URL", upstream)
    # Not at once: the test starts the sync itself.
    page.execute_script("document.querySelectorAll('form.create-mirror input[type=checkbox]')[1].click()")
    submit(page, form)
    heading_is(page, "mir")
    assert upstream in text_of(page, "dl.facts")
    assert "Last sync\n—" in text_of(page, "dl.facts")
    page.find_element(By.CSS_SELECTOR, "form.sync button").click()
    # The live status (jobUpdates over the websocket) reaches done without a reload.
    wait_for(page, "document.querySelector('.sync-progress .job-status')?.dataset.status === 'SUCCEEDED'", timeout=60)
    assert text_of(page, ".sync-progress .job-status").startswith("succeeded")
    assert page.execute_script("return document.querySelector('.sync-progress progress').value") == 1
    page.find_element(By.XPATH, "//button[text()='Refresh figures']").click()
    wait_for(page, "document.querySelector('dl.facts')?.textContent.includes('Files mirrored3 (')")
    wait_for(page, "document.querySelector('table.packages')?.textContent.includes('gamma')")
    page.execute_script("document.querySelector('section.mirror').scrollIntoView()")
    screenshot(page, "mirror-1280")
    # The jobs page lists the run, finished.
    page.get(f"{server.url}/#/jobs?channel=mir")
    heading_is(page, "Jobs (1)")
    assert "synchronize" in text_of(page, "table.jobs") and "succeeded" in text_of(page, "table.jobs")


@pytest.mark.parametrize("width", [1280, 390])
async def test_layout_fits_and_controls_are_labelled(published_for_layout: LiveServer, page: WebDriver,
                                                     width: int) -> None:
    await anyio.to_thread.run_sync(_layout, published_for_layout, page, width)


@pytest.fixture
async def published_for_layout(server: LiveServer, services: Services, tmp_path: Path) -> LiveServer:
    key = await owner_key_for_main(services)
    await make_user(services, "alice", Role.MAINTAINER)
    paths = [build_package(tmp_path, name, "1.0", "0", about={"summary": f"the {name} tool", "license": "MIT"},
                           depends=["python >=3.10"] if name == "numpyish" else [])
             for name in ("numpyish", "tools", "zlibish")]
    await anyio.to_thread.run_sync(upload, server, key, "main", paths)
    await make_channel(services, "team", private=True)
    return server


def _layout(server: LiveServer, page: WebDriver, width: int) -> None:
    page.set_window_size(width, 900)
    try:
        login(page, server, "dev")
        pages = [("", "Channels (2)"), ("channel/main", "main"), ("channel/main/numpyish", "numpyish 1.0"),
                 ("account", "Account: dev"), ("jobs", "Jobs (0)"), ("upload", "Upload packages"), ("admin", "Admin")]
        for path, heading in pages:
            page.get(f"{server.url}/#/{path}")
            heading_is(page, heading)
            assert overflow(page) <= 0, (path, width, overflow(page))
            assert unlabelled_controls(page) == [], path
            screenshot(page, f"{(path or 'home').replace('/', '-')}-{width}")
        # Keyboard: Tab from the top reaches the header's links and controls in order.
        page.get(f"{server.url}/#/")
        heading_is(page, "Channels (2)")
        page.execute_script("document.querySelector('a.brand').focus()")
        focused = []
        for _ in range(9):
            page.switch_to.active_element.send_keys("\t")
            focused.append(page.execute_script("const e = document.activeElement; return e.textContent || e.id"))
        assert {"Channels", "Jobs", "Upload", "Account", "Admin", "search", "Sign out"} <= set(focused), focused
    finally:
        page.set_window_size(1280, 900)


async def test_downloads_chart_and_sort_show_a_download_made_here(published_for_layout: LiveServer, page: WebDriver,
                                                                   services: Services) -> None:
    server = published_for_layout
    async with httpx2.AsyncClient(base_url=server.url) as http:
        for _ in range(3):
            assert (await http.get("/get/main/noarch/zlibish-1.0-0.conda")).status_code == 200
    # The server writes its counts within 0.1 s; the aggregate_metrics job folds them into days and months.
    with anyio.fail_after(20):
        while True:
            async with services.db.read() as session:
                if int(await session.scalar(select(func.coalesce(func.sum(DownloadEvent.count), 0))) or 0) >= 3:
                    break
            await anyio.sleep(0.05)
    await metrics.aggregate(services)
    await anyio.to_thread.run_sync(_chart_and_sort, server, page)


def _chart_and_sort(server: LiveServer, page: WebDriver) -> None:
    page.get(f"{server.url}/#/channel/main/zlibish")
    heading_is(page, "zlibish 1.0")
    today = page.execute_script("return new Date().toISOString().slice(0, 10)")
    wait_for(page, "document.querySelector('svg.chart rect.bar') !== null")
    bars = page.execute_script("return [...document.querySelectorAll('svg.chart rect.bar')]"
                               ".map(b => [b.dataset.start, Number(b.dataset.count)])")
    assert len(bars) == 30 and bars[-1] == [today, 3] and sum(count for _, count in bars) == 3, bars
    assert "Downloads (3 in all)" in text_of(page, "section.downloads h2")
    screenshot(page, "package-1280")
    # By month: this month's bar holds them.
    page.execute_script("const s = document.querySelector('select[name=period]'); s.value = 'month';"
                        "s.dispatchEvent(new Event('change'))")
    wait_for(page, "location.hash.includes('period=month')")
    wait_for(page, f"document.querySelector('svg.chart rect.bar:last-of-type')?.dataset.start === {today[:7]!r}")
    assert page.execute_script("return document.querySelectorAll('svg.chart rect.bar').length") == 12
    # The channel's packages, most downloaded first.
    page.get(f"{server.url}/#/channel/main?sort=downloads")
    heading_is(page, "main")
    wait_for(page, "document.querySelector('table.packages tbody tr td')?.textContent === 'zlibish'")
    page.get(f"{server.url}/#/channel/main")
    wait_for(page, "document.querySelector('table.packages tbody tr td')?.textContent === 'numpyish'")


def test_settings_schedule_and_delete_with_confirmation(server: LiveServer, page: WebDriver) -> None:
    login(page, server, "dev")
    page.get(f"{server.url}/#/")
    heading_is(page, "Channels (0)")
    fill(page, "form.create-channel", "Name", "scratch")
    submit(page, "form.create-channel")
    heading_is(page, "scratch")
    assert "public" in text_of(page, "main .badges")
    form = "form.settings"
    fill(page, form, "Description", "temporary things")
    page.find_element(By.CSS_SELECTOR, f"{form} .field.check input").click()  # Private
    submit(page, form)
    wait_for(page, "document.querySelector('main .badges')?.textContent.includes('private')")
    assert "temporary things" in text_of(page, "main")
    # Both an interval and a cron: refused, and the reason is shown in the schedule form.
    form = "form.schedule"
    fill(page, form, "Every (seconds)", "3600")
    fill(page, form, "or cron (UTC)", "*/5 * * * *")
    submit(page, form)
    wait_for(page, "document.querySelector('form.schedule .error')?.textContent.length > 0")
    assert not page.find_elements(By.CSS_SELECTOR, "section.schedules table")
    page.find_element(By.CSS_SELECTOR, f"{form} input[name=cron]").clear()
    submit(page, form)
    wait_for(page, "document.querySelector('section.schedules table')?.textContent.includes('every 3600 s')")
    # Delete: the name must be typed first.
    form = "form.delete-channel"
    fill(page, form, "Type scratch to confirm", "scratc")
    submit(page, form)
    wait_for(page, "document.querySelector('form.delete-channel .error')?.textContent.includes('to confirm')")
    fill(page, form, "Type scratch to confirm", "scratch")
    submit(page, form)
    heading_is(page, "Channels (0)")


@pytest.mark.parametrize("settings_overrides", [{"server": {"dev": True},
                                                 "jobs": {"embedded_runner": False, "embedded_scheduler": False}}])
async def test_cancel_a_queued_job_and_see_it_live(server: LiveServer, page: WebDriver, services: Services) -> None:
    from graphconda.services import jobs
    from graphconda.services.authz import SYSTEM

    await make_channel(services, "main")
    await jobs.run_job(services, SYSTEM, "reindex", channel="main")  # queued: no runner in this server
    await anyio.to_thread.run_sync(_cancel, server, page)


def _cancel(server: LiveServer, page: WebDriver) -> None:
    login(page, server, "dev")
    page.get(f"{server.url}/#/jobs?status=QUEUED")
    heading_is(page, "Jobs (1)")
    assert "queued" in text_of(page, "table.jobs .job-status")
    page.find_element(By.XPATH, "//table[contains(@class, 'jobs')]//button[text()='Cancel']").click()
    # The row follows the run over jobUpdates: cancelled, and its Cancel button goes away.
    wait_for(page, "document.querySelector('table.jobs .job-status')?.dataset.status === 'CANCELLED'")
    wait_for(page, "!document.querySelector('table.jobs button')")
    page.get(f"{server.url}/#/jobs?status=CANCELLED")
    heading_is(page, "Jobs (1)")


@pytest.mark.parametrize("settings_overrides", [{
    "server": {"dev": True}, "jobs": {"embedded_runner": False, "embedded_scheduler": False},
    "auth": {"providers": {"gh": {"kind": "github", "client_id": "id", "client_secret": "s", "display_name": "GitHub"},
                           "corp": {"client_id": "id", "client_secret": "s",
                                    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}},
}])
def test_sign_in_links_per_provider_and_sign_out_everywhere(server: LiveServer, page: WebDriver) -> None:
    page.get(f"{server.url}/#/channel/main")
    wait_for(page, "document.getElementById('viewer')?.textContent === 'anonymous'")
    links = page.execute_script("return [...document.querySelectorAll('#user a')].map(a => [a.textContent, a.href])")
    assert [text for text, _ in links] == ["Sign in with GitHub", "Sign in with corp"]
    # Each comes back to the page the user was on.
    assert links[0][1] == f"{server.url}/auth/gh/login?next=%2F%23%2Fchannel%2Fmain"
    # Two sessions of dev (this browser and another client); "sign out everywhere" ends both.
    with httpx2.Client(base_url=server.url) as other:
        other.get("/auth/dev/login/dev")
        assert other.get("/auth/me").json()["user"]["username"] == "dev"
        login(page, server, "dev")
        page.get(f"{server.url}/#/account")
        heading_is(page, "Account: dev")
        page.find_element(By.CSS_SELECTOR, "form[aria-label='Sign out everywhere'] button").click()
        wait_for(page, "document.getElementById('viewer')?.textContent === 'anonymous'")
        ended = other.get("/auth/me")
        assert ended.status_code == 401 or ended.json()["user"] is None, ended.text


async def test_package_members_added_and_removed(published_for_layout: LiveServer, page: WebDriver) -> None:
    await anyio.to_thread.run_sync(_package_members, published_for_layout, page)


def _package_members(server: LiveServer, page: WebDriver) -> None:
    login(page, server, "dev")
    page.get(f"{server.url}/#/channel/main/tools")
    heading_is(page, "tools 1.0")
    form = "form[aria-label='Add a package member']"
    fill(page, form, "User name", "alice")
    fill(page, form, "Role", "OWNER")
    submit(page, form)
    # The uploader owns the package already; alice joins as a second owner, then leaves.
    wait_for(page, "document.querySelector('section.package h2')?.textContent === 'Package members (2)'")
    assert "alice owner" in text_of(page, "section.package table")
    page.find_element(By.CSS_SELECTOR, "form[aria-label='Remove alice'] button").click()
    wait_for(page, "document.querySelector('section.package h2')?.textContent === 'Package members (1)'")
    assert "alice" not in text_of(page, "section.package table")


async def test_admin_sets_a_server_role_and_others_are_kept_out(server: LiveServer, page: WebDriver,
                                                                  services: Services) -> None:
    await make_user(services, "alice")
    await anyio.to_thread.run_sync(_server_roles, server, page)


def _server_roles(server: LiveServer, page: WebDriver) -> None:
    login(page, server, "dev")
    page.get(f"{server.url}/#/admin")
    heading_is(page, "Admin")
    form = "form[aria-label='Set server role of alice']"
    page.execute_script(f"document.querySelector({form!r} + ' select').value = 'MAINTAINER'")
    submit(page, form)
    wait_for(page, "document.querySelector('table.users button:disabled') === null")  # the save is done
    assert not text_of(page, f"{form} .error")
    page.refresh()  # what the server holds now
    heading_is(page, "Admin")
    assert page.execute_script(f"return document.querySelector({form!r} + ' select').value") == "MAINTAINER"
    # alice is staff now: she sees the admin link and page, but may not change roles (owners only).
    login(page, server, "alice")
    page.get(f"{server.url}/#/admin")
    heading_is(page, "Admin")
    wait_for(page, "[...document.querySelectorAll('#nav a')].some(a => a.textContent === 'Admin')")
    assert not page.find_elements(By.CSS_SELECTOR, form)
    assert "maintainer" in text_of(page, "table.users")
    # Someone without a server role is kept out.
    login(page, server, "bob")
    page.get(f"{server.url}/#/admin")
    heading_is(page, "Admin")
    assert "Server owners and maintainers only." in text_of(page, "main .error")
    wait_for(page, "document.getElementById('viewer')?.textContent === 'signed in as bob'")
    assert not page.find_elements(By.LINK_TEXT, "Admin")
