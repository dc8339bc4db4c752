"""The dashboard at `/ui/`: its page and files (services/dashboard), and `/ui/predict/…`,
which hands the page's predict form to the prediction service (docs/decisions/0024).

The page calls the API's own routes on its own origin, so it needs no CORS, and its
state-changing requests pass the cross-site check (services/api/auth.py): a browser sends
`Sec-Fetch-Site: same-origin` and an Origin that is the Host. The predictor is another
origin (another port, or a service the browser cannot reach at all), so the form goes to
the API, which sends the body on to DASHBOARD_PREDICT_URL with the caller's key: the
predictor, its fast path untouched, checks the key and the `predict` scope itself.

Nothing here is in the OpenAPI document: these are the browser's routes, not the API's.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from fastapi import APIRouter, FastAPI, Request, Response, Security
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from core import logs
from services import dashboard
from services.api.auth import caller
from services.api.errors import PredictorUnreachable

UI_URL = "/ui"
ASSETS_URL = "/ui/assets"
PREDICT_TIMEOUT_S = 30.0
# Only this origin, for everything: a file or a request to anywhere else is refused by
# the browser, whatever a model name or description holds.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


def install(app: FastAPI, *, predict_url: str) -> None:
    """Serve the dashboard on ``app``; its predict form goes to ``predict_url``."""
    index = (dashboard.STATIC / dashboard.INDEX).read_bytes()
    app.mount(ASSETS_URL, StaticFiles(directory=dashboard.STATIC), name="ui-assets")

    async def page(_request: Request) -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers=_HEADERS)

    async def to_page(_request: Request) -> Response:
        # Relative, so that it works under any root path: the page's own URLs are relative
        # to /ui/ (assets/app.js, and ../ for the API).
        return RedirectResponse("ui/", status_code=308)

    app.add_route(UI_URL, to_page, include_in_schema=False)
    app.add_route(f"{UI_URL}/", page, include_in_schema=False)
    app.include_router(_predict_router(predict_url.rstrip("/")))


def _predict_router(predict_url: str) -> APIRouter:
    # `caller` without a scope: the cross-site check, and a 401 the page answers by asking
    # for a key; the scope and the model are the predictor's to check.
    router = APIRouter(tags=["dashboard"], include_in_schema=False, dependencies=[Security(caller)])

    async def forward(request: Request, path: str) -> Response:
        headers = {"content-type": "application/json"}
        # The predictor's lines for this prediction carry the API's request id.
        if (rid := logs.request_id.get()) is not None:
            headers["x-request-id"] = rid
        authorization = request.headers.get("authorization")
        if authorization is not None:
            headers["authorization"] = authorization
        try:
            async with httpx.AsyncClient(base_url=predict_url, timeout=PREDICT_TIMEOUT_S) as client:
                answer = await client.post(path, content=await request.body(), headers=headers)
        except httpx.TransportError as exc:
            raise PredictorUnreachable(
                f"the prediction service at {predict_url} does not answer "
                f"({type(exc).__name__}); DASHBOARD_PREDICT_URL says where the API reaches it",
                retry_after_s=5,
            ) from exc
        return Response(
            answer.content,
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type", "application/json"),
        )

    @router.post(f"{UI_URL}/predict/{{target}}")
    async def ui_predict(request: Request, target: str) -> Response:
        # `name` or `name@alias`, as the predictor's own route takes it.
        return await forward(request, f"/predict/{quote(target, safe='@')}")

    @router.post(f"{UI_URL}/predict/{{target}}/versions/{{version}}")
    async def ui_predict_version(request: Request, target: str, version: str) -> Response:
        return await forward(request, f"/predict/{quote(target)}/versions/{quote(version)}")

    return router
