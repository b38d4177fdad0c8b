"""The console in a real browser: Debian's Chromium, driven by Playwright.

Against a database seeded by a real demo run (and, for the bulk actions, 200 jobs failed
in an Apify incident), it logs in, opens every page, clicks Cancel and Retry, retries 200
failed jobs by filter after reading the count and the spend estimate, cancels a
selection, returns to a deep link after logging in, meets the login page through a real
nginx in front of the console, and checks that script text from users and scraped data
shows as text and never runs. Without Chromium (a laptop) the tests skip and say why;
with CI=true they fail instead.

KAIRO_CONSOLE_SCREENSHOTS=1 also writes every page, light and dark (and two on a phone),
to docs/console/.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pathlib
import re
import shutil
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import console_seed
import nginx_kit
import pytest
from console_e2e_kit import start_console, stop
from incident_seed import ACTOR_MEAN_USD, SOURCE_MEAN_USD, job, seed_incident_at

from kairo_ingest.db import engine as db_engine
from support import ci

CHROMIUM = os.environ.get("KAIRO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "console"
TOKEN = console_seed.CONSOLE_TOKEN
DESKTOP = {"width": 1200, "height": 760}
PHONE = {"width": 390, "height": 760}

T = TypeVar("T")

pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    ci.missing_tool(f"{reason} (apt-get install chromium, pip install playwright)")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not pathlib.Path(CHROMIUM).is_file():
        _missing(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    with sync_playwright() as pw:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        launched = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _off_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    # Playwright's sync API keeps an event loop on this thread: run on another one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout=120)


async def _fetch(url: str, query: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def _statuses(url: str, ids: list[uuid.UUID]) -> dict[str, int]:
    rows = _off_thread(
        _fetch(url, "SELECT status, count(*) FROM jobs WHERE id = ANY($1) GROUP BY 1", ids)
    )
    return {r[0]: r[1] for r in rows}


def _job_status(url: str, job_id: uuid.UUID) -> str:
    rows = _off_thread(_fetch(url, "SELECT status FROM jobs WHERE id = $1", job_id))
    return str(rows[0][0])


def _log_in(page: Any, base: str, path: str = "/") -> None:
    first = page.goto(base + path)
    assert first is not None
    assert first.status == 401
    page.fill("input[name=token]", TOKEN)
    page.click("form.login button[type=submit]")
    page.wait_for_url(base + path)


def _shot(page: Any, tmp_path: pathlib.Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("KAIRO_CONSOLE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / name))


@pytest.mark.parametrize("seeded", [False], indirect=True, ids=["demo-only"])
def test_every_page_and_both_actions_in_a_browser(
    seeded: console_seed.Seeded, browser: Any
) -> None:
    proc, base = start_console(seeded.url, token=TOKEN)
    dialogs: list[str] = []
    try:
        page = browser.new_page(viewport=DESKTOP)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        _log_in(page, base)

        # Overview: counts, the throughput chart, failures by kind, spend per account.
        assert page.inner_text("#pending") == "1"
        assert page.inner_text("#succeeded") == "3"
        assert page.locator("#throughput-chart svg.chart rect").count() >= 1
        assert "default" in page.inner_text("#spend")
        assert page.locator("meta[http-equiv=refresh]").count() == 1

        # Now the hostile rows: script text in an identifier, errors and an Apify run id.
        # (The overview's panels are cached for a few seconds; the lists are not.)
        _off_thread(console_seed.add_xss_rows_at(seeded.url))
        page.goto(base + "/jobs?status=failed")
        assert console_seed.XSS in page.inner_text("main")  # the error kind, as text

        # Jobs: every demo job, then a filter.
        page.click("nav >> text=Jobs")
        page.wait_for_url("**/jobs")
        text = page.inner_text("table.list")
        for job_id in seeded.demo_jobs:
            assert str(job_id)[:12] in text
        page.select_option("#job-filters select[name=status]", "failed")
        page.click("#job-filters button")
        page.wait_for_url("**/jobs?status=failed*")
        rows = page.locator("#jobs tbody tr")
        assert rows.count() == 1
        assert console_seed.XSS in rows.first.inner_text()

        # A demo job: its evidence status as a table, one row per source, and its cost.
        page.goto(f"{base}/jobs/{seeded.demo_jobs[0]}")
        assert page.locator("#evidence tbody tr").count() == 7
        assert page.locator("#job-status").inner_text() == "succeeded"
        assert re.search(r"\$\d+\.\d{4} over \d+ runs", page.inner_text("#job-cost"))

        # Cancel, then Retry: the same queue functions as the CLI; the database changes.
        page.goto(f"{base}/jobs/{seeded.pending_job}")
        page.click("#cancel")
        page.wait_for_url("**?done=cancelled")
        assert page.inner_text("#job-status") == "cancelled"
        assert _job_status(seeded.url, seeded.pending_job) == "cancelled"
        page.click("#retry")
        page.wait_for_url("**?done=retried")
        assert page.inner_text("#job-status") == "pending"
        assert _job_status(seeded.url, seeded.pending_job) == "pending"

        # Brands and sources: script text as text; flagged-off capabilities shown as such.
        page.click("nav >> text=Brands and sources")
        page.wait_for_url("**/brands")
        brands = page.inner_text("main")
        assert console_seed.XSS in brands
        assert "capability off" in brands
        assert "fresh" in brands

        # Runs: the durations chart and a link to each run on the Apify console.
        page.click("nav >> text=Runs")
        page.wait_for_url("**/runs")
        assert page.locator("#durations-chart svg.chart").count() == 1
        links = page.locator("a[href^='https://console.apify.com/view/runs/']")
        assert links.count() >= 18
        assert console_seed.XSS in page.inner_text("table.runs")

        # Spend: the chart and the tables; Audit: the two actions above, who and from where.
        page.click("nav >> text=Spend")
        page.wait_for_url("**/spend")
        assert page.locator("#spend-chart svg.chart rect").count() >= 1
        page.click("nav >> text=Audit")
        page.wait_for_url("**/audit")
        audit = page.inner_text("#audit")
        assert audit.count("127.0.0.1") == 2

        # The XSS job page shows every hostile string as text.
        page.goto(f"{base}/jobs/{console_seed.XSS_JOB}")
        assert console_seed.XSS in page.inner_text("#last-error")
        assert page.locator("main script").count() == 0

        page.click("header button")  # log out
        page.wait_for_url(base + "/login")
        assert page.goto(base + "/jobs").status == 401  # type: ignore[union-attr]
    finally:
        stop(proc)
    assert dialogs == [], "a script from the data ran in the page"


def test_a_bulk_retry_of_200_failed_jobs_by_filter(db_url: str, browser: Any) -> None:
    _off_thread(seed_incident_at(db_url, 200))
    failed = [job(i) for i in range(1, 201)]
    proc, base = start_console(db_url, token=TOKEN)
    try:
        page = browser.new_page(viewport=DESKTOP)
        _log_in(page, base, "/jobs")
        page.fill("#job-filters input[name=q]", "crashed incident")
        page.click("#job-filters button")
        page.wait_for_url("**/jobs?*q=crashed*")
        assert page.locator("#jobs tbody tr").count() == 50  # one page of 200
        page.select_option("#bulk-action", "retry")
        page.click("#bulk-matching")
        page.wait_for_url(base + "/jobs/bulk")
        assert page.inner_text("h1") == "Retry 200 jobs?"
        assert page.inner_text("#matched").startswith("200")
        estimate = page.inner_text("#estimate")
        expected = 200 * (SOURCE_MEAN_USD + ACTOR_MEAN_USD)
        assert f"${expected:,.2f}" in estimate
        assert "400 source runs over 200 brands" in estimate
        assert _statuses(db_url, failed) == {"failed": 200}  # nothing before the confirm
        fields = dict(
            page.eval_on_selector_all("#confirm input", "els => els.map(e => [e.name, e.value])")
        )
        page.click("#confirm-button")
        page.wait_for_url(re.compile(r".*/audit/[0-9a-f-]{36}$"))
        assert page.inner_text("#audit-state") == "done"
        assert page.inner_text("#audit-changed") == "200"
        assert _statuses(db_url, failed) == {"pending": 200}
        # The same form sent again (a double submit): the same action id changes nothing.
        again = page.request.post(base + "/jobs/bulk/apply", form=fields)
        assert again.status == 200  # after the redirect to the same audit entry
        assert 'id="audit-changed">200<' in again.text()
        rows = _off_thread(_fetch(db_url, "SELECT count(*) FROM console_audit"))
        assert rows[0][0] == 1
    finally:
        stop(proc)


@pytest.mark.parametrize("seeded", [False], indirect=True, ids=["demo-only"])
def test_a_bulk_cancel_of_selected_jobs(seeded: console_seed.Seeded, browser: Any) -> None:
    rows = _off_thread(
        _fetch(
            seeded.url,
            "INSERT INTO jobs (brand_id, status) SELECT gen_random_uuid(), 'pending' "
            "FROM generate_series(1, 4) RETURNING id",
        )
    )
    new = [r[0] for r in rows]
    chosen, kept = new[:3], [*new[3:], seeded.pending_job]
    proc, base = start_console(seeded.url, token=TOKEN)
    try:
        page = browser.new_page(viewport=DESKTOP)
        _log_in(page, base, "/jobs?status=pending")
        for job_id in chosen:
            page.check(f"input[name=id][value='{job_id}']")
        page.select_option("#bulk-action", "cancel")
        page.click("#bulk-selected")
        page.wait_for_url(base + "/jobs/bulk")
        assert page.inner_text("h1") == "Cancel 3 jobs?"
        assert page.locator("#estimate").count() == 0
        page.click("#confirm-button")
        page.wait_for_url(re.compile(r".*/audit/[0-9a-f-]{36}$"))
        assert page.inner_text("#audit-changed") == "3"
    finally:
        stop(proc)
    assert _statuses(seeded.url, chosen) == {"cancelled": 3}
    assert _statuses(seeded.url, kept) == {"pending": 2}


@pytest.mark.parametrize("seeded", [False], indirect=True, ids=["demo-only"])
def test_a_login_returns_to_the_deep_link_from_an_alert(
    seeded: console_seed.Seeded, browser: Any
) -> None:
    proc, base = start_console(seeded.url, token=TOKEN)
    deep = f"/jobs/{seeded.demo_jobs[1]}?done=retried"
    try:
        page = browser.new_page(viewport=DESKTOP)
        first = page.goto(base + deep)
        assert first is not None
        assert first.status == 401
        page.fill("input[name=token]", "wrong-token-0123456789abcdefgh")
        page.click("form.login button[type=submit]")
        assert page.locator("#login-failed").count() == 1
        page.fill("input[name=token]", TOKEN)
        page.click("form.login button[type=submit]")
        page.wait_for_url(base + deep)
        assert page.inner_text("#job-status") == "succeeded"
        assert str(seeded.demo_jobs[1]) in page.inner_text("h1")
    finally:
        stop(proc)


@pytest.mark.parametrize("seeded", [False], indirect=True, ids=["demo-only"])
def test_a_request_through_a_local_reverse_proxy_without_a_credential_is_refused(
    seeded: console_seed.Seeded, browser: Any
) -> None:
    proc, base = start_console(seeded.url, token=TOKEN)
    port = int(base.rsplit(":", 1)[1])
    try:
        with nginx_kit.proxy_to(port) as proxied:
            page = browser.new_page(viewport=DESKTOP)
            for path in ("/", "/jobs", f"/jobs/{seeded.pending_job}", "/spend", "/audit"):
                response = page.goto(proxied + path)
                assert response is not None
                assert response.status == 401, path
                assert page.locator("input[name=token]").count() == 1
                assert page.locator("#jobs, #evidence, #audit, #spend-chart").count() == 0
            # The same browser logs in through the proxy and comes back to where it was.
            page.goto(proxied + "/audit")
            page.fill("input[name=token]", TOKEN)
            page.click("form.login button[type=submit]")
            page.wait_for_url(proxied + "/audit")
    finally:
        stop(proc)


@pytest.mark.parametrize("seeded", [False], indirect=True, ids=["demo-only"])
def test_every_page_light_and_dark_and_on_a_phone(
    seeded: console_seed.Seeded, browser: Any, tmp_path: pathlib.Path
) -> None:
    _off_thread(seed_incident_at(seeded.url, 12))
    _off_thread(console_seed.add_workers_at(seeded.url))  # so /workers lists replicas
    proc, base = start_console(seeded.url, token=TOKEN, KAIRO_APIFY_ACCOUNT_DAILY_CAP_USD="4")
    try:
        light = browser.new_context(viewport=DESKTOP, color_scheme="light")
        page = light.new_page()
        assert page.goto(base + "/jobs") is not None
        _shot(page, tmp_path, "login-light.png")
        _log_in(page, base)
        # One action, so the audit pages have an entry.
        page.goto(f"{base}/jobs/{seeded.pending_job}")
        page.click("#cancel")
        page.wait_for_url("**?done=cancelled")
        audit_id = _off_thread(_fetch(seeded.url, "SELECT id FROM console_audit"))[0][0]
        pages = {
            "overview": "/",
            "jobs": "/jobs?status=failed&q=crashed",
            "job": f"/jobs/{seeded.demo_jobs[0]}",
            "runs": "/runs",
            "ledger": "/ledger",
            "workers": "/workers?lease_within=600",  # the shorter leases as stuck work
            "brands": "/brands?handle=acme",
            "spend": "/spend",
            "audit": "/audit",
            "audit-entry": f"/audit/{audit_id}",
        }
        cookies = light.cookies()
        dark = browser.new_context(viewport=DESKTOP, color_scheme="dark")
        dark.add_cookies(cookies)
        backgrounds = {}
        for scheme, context in (("light", light), ("dark", dark)):
            tab = context.new_page()
            for name, path in pages.items():
                response = tab.goto(base + path)
                assert response is not None
                assert response.status == 200, path
                _shot(tab, tmp_path, f"{name}-{scheme}.png")
                if name == "spend":  # the daily cap, drawn as a dashed line
                    assert tab.locator("#spend-chart polyline[stroke-dasharray]").count() == 1
                if name == "workers":  # live replicas, with the jobs they hold
                    live = tab.inner_text("#live-workers")
                    for owner, *_ in console_seed.WORKERS:
                        assert owner in live
                    assert tab.locator("#leases-near-expiry tbody tr a").count() == 2
            # The confirmation of a bulk retry (a preview: nothing changes).
            tab.goto(base + "/jobs?error_kind=apify_run_failed")
            tab.select_option("#bulk-action", "retry")
            tab.click("#bulk-matching")
            tab.wait_for_url(base + "/jobs/bulk")
            _shot(tab, tmp_path, f"confirm-{scheme}.png")
            backgrounds[scheme] = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        assert backgrounds["light"] != backgrounds["dark"]
        # A phone: nothing is wider than the screen but the tables' own scroll boxes.
        phone = browser.new_context(viewport=PHONE, color_scheme="light", is_mobile=True)
        phone.add_cookies(cookies)
        tab = phone.new_page()
        for name, path in pages.items():
            tab.goto(base + path)
            width = tab.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (name, width)
            if name in ("overview", "jobs"):
                _shot(tab, tmp_path, f"{name}-phone.png")
    finally:
        stop(proc)
