"""The docs page in a real browser, the system's Chromium: it renders and works air-gapped.

Never skipped: without Chromium (``make test`` installs Debian's) the test fails and says
how to get it. Every request the page makes is checked; one that would leave hookline is
aborted and fails the test.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

from tests.helpers import Hookline, spin_event

CHROMIUM = Path(os.environ.get("HOOKLINE_TEST_CHROMIUM", "/usr/bin/chromium"))
FOUND = CHROMIUM.exists()
# Headless, and quiet: without the background-networking flags Chromium tries Google's hosts.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert FOUND, (
        f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make test does), "
        "or point HOOKLINE_TEST_CHROMIUM at one"
    )
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


async def _page(browser: Browser, hookline: Hookline, elsewhere: list[str]) -> Page:
    page = await browser.new_page()

    async def only_hookline(route: Route) -> None:
        if route.request.url.startswith(hookline.base_url + "/"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_hookline)
    return page


async def test_the_docs_page_shows_every_operation_and_asks_only_hookline(
    browser: Browser, hookline: Hookline
) -> None:
    elsewhere: list[str] = []
    page = await _page(browser, hookline, elsewhere)
    await page.goto(f"{hookline.base_url}/docs")
    spec = (await hookline.client.get("/openapi.json")).json()
    operations = sum(
        method in {"get", "post", "put", "patch", "delete"}
        for item in spec["paths"].values()
        for method in item
    )
    blocks = page.locator(".opblock")
    await blocks.nth(operations - 1).wait_for()
    assert await blocks.count() == operations
    assert elsewhere == []


async def test_an_event_posted_from_the_docs_page_is_accepted(
    browser: Browser, hookline: Hookline
) -> None:
    elsewhere: list[str] = []
    page = await _page(browser, hookline, elsewhere)
    await page.goto(f"{hookline.base_url}/docs")
    post = page.locator(".opblock-post", has=page.locator("[data-path='/api/v1/events']"))
    await post.locator(".opblock-summary").click()
    await post.get_by_role("button", name="Try it out").click()
    body = post.locator("textarea.body-param__text")
    event = spin_event(user="from-the-docs")
    await body.fill(json.dumps(event))
    async with page.expect_response(f"{hookline.base_url}/api/v1/events") as answered:
        await post.get_by_role("button", name="Execute").click()
    accepted = await (await answered.value).json()
    status = post.locator(".live-responses-table .response .response-col_status")
    assert (await status.first.inner_text()).strip() == "202"
    stored = await hookline.client.get(f"/api/v1/events/{accepted['events'][0]['id']}")
    assert stored.json()["user_ext_id"] == "from-the-docs"
    assert elsewhere == []
