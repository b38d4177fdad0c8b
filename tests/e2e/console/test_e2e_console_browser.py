"""The console in a real browser: Debian's Chromium, driven by Playwright.

Against a database seeded by a real demo run, it logs in, opens every page, clicks
Cancel and Retry and checks the database changed, and checks that script text from
users and scraped data shows as text and never runs. Without Chromium (a laptop) the
tests skip and say why; with CI=true they fail instead.

KAIRO_CONSOLE_SCREENSHOTS=1 also writes docs/console-overview.png and docs/console-job.png.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import pathlib
import shutil
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import asyncpg
import console_seed
import pytest
from console_e2e_kit import start_console, stop

from kairo_ingest.db import engine as db_engine
from support import ci

CHROMIUM = os.environ.get("KAIRO_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs"

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
        return pool.submit(asyncio.run, coroutine).result(timeout=30)


def _job_status(url: str, job_id: uuid.UUID) -> str:
    async def read() -> str:
        conn = await asyncpg.connect(db_engine.plain_dsn(url), timeout=10)
        try:
            return str(await conn.fetchval("SELECT status FROM jobs WHERE id = $1", job_id))
        finally:
            await conn.close()

    return _off_thread(read())


def _shot(page: Any, tmp_path: pathlib.Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("KAIRO_CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / name), full_page=True)


@pytest.mark.parametrize("seeded", [False], indirect=True, ids=["demo-only"])
def test_every_page_and_both_actions_in_a_browser(
    seeded: console_seed.Seeded, browser: Any, tmp_path: pathlib.Path
) -> None:
    token = console_seed.CONSOLE_TOKEN
    proc, base = start_console(seeded.url, token=token)
    dialogs: list[str] = []
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        # Not logged in: the login form, with a 401.
        first = page.goto(base + "/")
        assert first is not None
        assert first.status == 401
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")

        # Overview: counts, the throughput chart, failures by kind, spend per account.
        assert page.inner_text("#pending") == "1"
        assert page.inner_text("#succeeded") == "3"
        assert page.locator("#throughput-chart svg.chart rect").count() >= 1
        assert "default" in page.inner_text("#spend")
        assert page.locator("meta[http-equiv=refresh]").count() == 1
        _shot(page, tmp_path, "console-overview.png")

        # Now the hostile rows: script text in an identifier, errors and an Apify run id.
        _off_thread(console_seed.add_xss_rows_at(seeded.url))
        page.reload()
        assert console_seed.XSS in page.inner_text("main")  # the error kind, as text

        # Jobs: every demo job, then a filter.
        page.click("nav >> text=Jobs")
        text = page.inner_text("table.list")
        for job_id in seeded.demo_jobs:
            assert str(job_id)[:12] in text
        page.select_option("select[name=status]", "failed")
        page.click("form.filters button")
        page.wait_for_url("**/jobs?status=failed*")
        rows = page.locator("table.list tbody tr")
        assert rows.count() == 1
        assert console_seed.XSS in rows.first.inner_text()

        # A demo job: its evidence status as a table, one row per source.
        page.goto(f"{base}/jobs/{seeded.demo_jobs[0]}")
        assert page.locator("#evidence tbody tr").count() == 7
        assert page.locator("#job-status").inner_text() == "succeeded"
        _shot(page, tmp_path, "console-job.png")

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
        brands = page.inner_text("main")
        assert console_seed.XSS in brands
        assert "capability off" in brands
        assert "fresh" in brands

        # Runs: the durations chart and a link to each run on the Apify console.
        page.click("nav >> text=Runs")
        assert page.locator("#durations-chart svg.chart").count() == 1
        links = page.locator("a[href^='https://console.apify.com/view/runs/']")
        assert links.count() >= 18
        assert console_seed.XSS in page.inner_text("table.runs")

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
