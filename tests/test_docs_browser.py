"""The docs page in a real browser, the system's Chromium: it renders and works air-gapped.

Never skipped: without Chromium (``make test`` installs Debian's) the test fails and says
how to get it. Nothing leaves the machine: every request but loopback goes to a proxy on a
closed local port, and a request the page makes elsewhere than hookline fails the test.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Request, async_playwright

from hookline.keys import Role
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
    # Loopback goes direct (Chromium never proxies it); anything else to a closed local port.
    "--proxy-server=http://127.0.0.1:9",
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


async def _page(
    browser: Browser, hookline: Hookline, elsewhere: list[str], key: str | None = None
) -> Page:
    # The key as a person gives it when the browser asks (Basic: any user, the key as password).
    credentials: Any = {"username": "me", "password": key} if key else None
    page = await (await browser.new_context(http_credentials=credentials)).new_page()

    def note(request: Request) -> None:
        if not request.url.startswith(hookline.base_url + "/"):
            elsewhere.append(request.url)

    page.on("request", note)
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


@pytest.mark.parametrize("with_keys", [False, True], ids=["open", "admin key"])
async def test_an_event_posted_from_the_docs_page_is_accepted(
    browser: Browser, hookline: Hookline, with_keys: bool
) -> None:
    key = None
    if with_keys:  # the key typed into the browser's prompt; the page's own POST carries it
        _, key = await hookline.runtime.keys.create(Role.ADMIN, (), "docs admin")
    elsewhere: list[str] = []
    page = await _page(browser, hookline, elsewhere, key)
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
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    stored = await hookline.client.get(
        f"/api/v1/events/{accepted['events'][0]['id']}", headers=headers
    )
    assert stored.json()["user_ext_id"] == "from-the-docs"
    assert elsewhere == []


async def test_with_keys_the_browser_asks_for_one_and_the_page_works_with_it(
    browser: Browser, hookline: Hookline
) -> None:
    _, key = await hookline.runtime.keys.create(Role.READ, (), "docs reader")
    refused = await hookline.client.get("/docs")
    assert refused.status_code == 401
    # What makes a browser ask for the key, and send it with the page's own requests.
    assert 'Basic realm="hookline", charset="UTF-8"' in refused.headers.get_list("www-authenticate")
    elsewhere: list[str] = []
    page = await _page(browser, hookline, elsewhere, key)
    await page.goto(f"{hookline.base_url}/docs")
    rules = page.locator(".opblock-get", has=page.locator("[data-path='/api/v1/rules']"))
    await rules.locator(".opblock-summary").click()
    await rules.get_by_role("button", name="Try it out").click()
    async with page.expect_response(f"{hookline.base_url}/api/v1/rules") as answered:
        await rules.get_by_role("button", name="Execute").click()
    assert (await answered.value).status == 200
    assert elsewhere == []
