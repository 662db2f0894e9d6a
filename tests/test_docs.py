"""The API describes itself, and its docs page works air-gapped."""

from __future__ import annotations

import re

from tests.helpers import Hookline


async def test_healthz_and_openapi(hookline: Hookline) -> None:
    health = await hookline.client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    spec = (await hookline.client.get("/openapi.json")).json()
    for path in (
        "/api/v1/events",
        "/api/v1/rules",
        "/api/v1/webhooks/preview",
        "/echo-list/{secret}/",
    ):
        assert path in spec["paths"]
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


async def test_docs_page_loads_its_assets_from_hookline(hookline: Hookline) -> None:
    page = await hookline.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"  # no other site may frame it
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
    assert urls
    for url in urls:
        assert url.startswith("/"), f"{url} would leave the machine"
        asset = await hookline.client.get(url)
        assert asset.status_code == 200, url
