"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from files shipped in the package, on both
services, so that they work without internet: FastAPI's own pages load their JavaScript and
CSS from cdn.jsdelivr.net, ReDoc's fonts from Google and the favicon from
fastapi.tiangolo.com, and are blank offline.

As FastAPI's "Self-Hosting JavaScript and CSS for docs": the app is made with
``docs_url=None, redoc_url=None`` and `install` adds the pages and mounts the files
(services/docs_assets) at `ASSETS_URL`. Every URL in the pages is on the page's own origin,
under the request's root_path as FastAPI's own pages do.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from services import docs_assets

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
ASSETS_URL = "/docs-assets"
# What a browser asks for to show the pages (the OpenAPI document aside); the predictor
# lets these in without a key (services/predict/access.py).
PUBLIC_PATHS = frozenset(
    {DOCS_URL, REDOC_URL, OAUTH2_REDIRECT_URL}
    | {f"{ASSETS_URL}/{name}" for name in docs_assets.FILES}
)


def install(app: FastAPI) -> None:
    """Serve `/docs`, its OAuth2 redirect page, `/redoc` and their files on ``app``."""
    if app.docs_url is not None or app.redoc_url is not None:
        # FastAPI would have added its CDN pages already, and they would answer first.
        raise ValueError("make the app with docs_url=None, redoc_url=None: install adds them")
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    app.mount(ASSETS_URL, StaticFiles(directory=docs_assets.STATIC), name="docs-assets")

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    # Plain Starlette routes, as FastAPI adds its own pages: no operation, no dependencies
    # (and no operation id, which both apps make from the first tag).
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        assets = base + ASSETS_URL
        return get_swagger_ui_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/{docs_assets.SWAGGER_JS}",
            swagger_css_url=f"{assets}/{docs_assets.SWAGGER_CSS}",
            swagger_favicon_url=f"{assets}/{docs_assets.FAVICON}",
            oauth2_redirect_url=base + OAUTH2_REDIRECT_URL,
            init_oauth=app.swagger_ui_init_oauth,
            # Swagger UI would otherwise name validator.swagger.io (its badge): no other origin.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    async def swagger_ui_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        assets = base + ASSETS_URL
        return get_redoc_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{assets}/{docs_assets.REDOC_JS}",
            redoc_favicon_url=f"{assets}/{docs_assets.FAVICON}",
            with_google_fonts=False,
        )

    app.add_route(DOCS_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
