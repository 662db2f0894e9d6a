"""The HTTP API: thin routes over the runtime. ``create_app`` is the ASGI entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import swagger_ui_bundle
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hookline import __version__
from hookline.api import (
    auth,
    deliveries,
    echo,
    errors,
    events,
    journeys,
    keys,
    metrics,
    rules,
    users,
    webhooks,
)
from hookline.api._json import JSON
from hookline.api.access import AccessLog
from hookline.api.limits import BodyLimit
from hookline.api.models import ERROR_RESPONSES, Health
from hookline.runtime import Runtime

DESCRIPTION = (
    "hookline turns user events into templated, signed, retried webhooks. "
    "Errors are JSON `{code, detail, field}`."
)


def create_app(runtime: Runtime) -> FastAPI:
    """The app for ``runtime``; its lifespan starts and stops the runtime."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        auth.announce(runtime.settings, runtime.keys.active, runtime.keys.made)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="hookline",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        default_response_class=JSON,
        # Every route's errors are {code, detail, field}; this replaces FastAPI's 422 model.
        responses=ERROR_RESPONSES,
    )
    app.state.runtime = runtime
    errors.install(app)
    for module in (events, users, rules, webhooks, deliveries, keys, echo):
        app.include_router(module.router)
    app.include_router(journeys.router)
    app.include_router(journeys.users_router)
    # Swagger UI is served from the installed package: hookline works air-gapped.
    app.mount(
        "/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger"
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="hookline API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )
        # Its "Execute" buttons change data: no other site may frame it (clickjacking).
        page.headers["X-Frame-Options"] = "DENY"
        page.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return page

    @app.get(
        "/healthz",
        tags=["health"],
        summary="200 when ready to accept events",
        response_model=Health,
        responses={
            503: {
                "model": Health,
                "description": "Starting (not ready yet), or failing: a background loop "
                "ended (named in `failing`), and hookline needs a restart.",
            }
        },
    )
    async def healthz(request: Request) -> JSON:
        if not runtime.started:
            return JSON({"status": "starting"}, status_code=503)
        failing = runtime.failing()
        # Stored rules and webhooks that could not be loaded: skipped, so still serving.
        problems = runtime.problems()
        # Their ids and details name objects of every brand: not for anyone who asks.
        shown = problems if await auth.sees_everything(request, runtime) else []
        return JSON(
            {
                "status": "failing" if failing else "ok",
                "version": __version__,
                "failing": failing,
                "problems": shown,
                "problem_count": len(problems),
            },
            status_code=503 if failing else 200,
        )

    metrics.install(app, runtime)

    # Innermost: the body limit, the gate and the access log all run around the ingest path.
    app.add_middleware(events.IngestPath, runtime=runtime)
    app.add_middleware(BodyLimit, limit=runtime.settings.max_request_bytes)
    auth.install(app, runtime)  # every path's right in auth.RIGHTS; checked before BodyLimit
    app.add_middleware(AccessLog)  # added last, so outermost: it times and logs every answer
    return app
