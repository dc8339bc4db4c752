"""services/docs.py: `/docs` and `/redoc` of both services work without internet. Every
URL the pages name is on their own origin and is served, from the files in
services/docs_assets, with no key even where keys are required; FastAPI's defaults (a CDN,
Google Fonts, fastapi.tiangolo.com's favicon) fail these tests."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.access import KeyRing
from services import docs, docs_assets
from services.api.app import create_app as create_api
from services.predict.app import create_app as create_predictor
from tests.conftest import api_settings
from tests.unit.services.predict.models import make_settings, make_source

PAGES = [docs.DOCS_URL, docs.REDOC_URL]
# What a page may load, by the tag that loads it.
KINDS = {"script": "javascript", "link:stylesheet": "text/css", "link:shortcut icon": "image/"}


def predictor(home: Path) -> FastAPI:
    keys = KeyRing(lambda: {}, max_age_s=3600, required=True)
    return create_predictor(
        make_settings(home, kiln_auth="required"), source=make_source(), keys=keys
    )


@pytest.fixture(scope="module", params=["api", "predict"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """Each service with API keys required and none given."""
    home = tmp_path_factory.mktemp("kiln")
    if request.param == "api":
        url: str = request.getfixturevalue("sqlite_url")
        app = create_api(api_settings(home, url, kiln_auth="required"))
    else:
        app = predictor(home)
    with TestClient(app) as c:
        yield c


class _Refs(HTMLParser):
    """Each (tag kind, URL) a page loads: scripts' src, links' href, ReDoc's spec-url."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "link":
            tag = f"link:{values.get('rel', '')}"
        for name in ("src", "href"):
            if name in values:
                self.refs.append((tag, values[name]))
        if "spec-url" in values:
            self.refs.append(("spec", values["spec-url"]))


def refs(html: str) -> list[tuple[str, str]]:
    parser = _Refs()
    parser.feed(html)
    # Swagger UI's document URL is in its script, as `url: '...'`.
    parser.refs += [("spec", url) for url in re.findall(r"\burl: '([^']*)'", html)]
    return parser.refs


def same_origin(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_nothing_from_another_origin(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    found = refs(response.text)
    assert {kind for kind, _ in found} >= {"script", "link:shortcut icon", "spec"}
    assert [url for _, url in found if not same_origin(url)] == []
    # No CDN, Google Fonts or favicon host, in an attribute or in the inline script.
    assert re.findall(r"\w+://[^\s'\"<>]*", response.text) == []


@pytest.mark.parametrize("page", PAGES)
def test_what_the_pages_load_is_served_without_a_key(client: TestClient, page: str) -> None:
    for kind, url in refs(client.get(page).text):
        response = client.get(url)
        assert response.status_code == 200, url
        content_type = response.headers["content-type"]
        if kind == "spec":
            assert response.json()["openapi"].startswith("3.")
            continue
        assert KINDS[kind] in content_type, (url, content_type)
        if kind != "link:shortcut icon":
            # The bundles, not an error page: Swagger UI's is 1.7 MB, its CSS 0.2, ReDoc 1.1.
            assert len(response.content) > 100_000, url


def test_swagger_ui_oauth2_redirect_page_is_served(client: TestClient) -> None:
    response = client.get(docs.OAUTH2_REDIRECT_URL)
    assert response.status_code == 200
    assert "swaggerUIRedirectOauth2" in response.text
    assert f"'{docs.OAUTH2_REDIRECT_URL}'" in client.get(docs.DOCS_URL).text


def test_the_pages_are_not_operations(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith(("/docs", "/redoc"))]


def test_urls_follow_root_path(tmp_path: Path) -> None:
    # Behind a proxy that serves the predictor under /kiln, the pages name /kiln/... URLs.
    with TestClient(predictor(tmp_path), root_path="/kiln") as c:
        for page in PAGES:
            urls = [url for _, url in refs(c.get(page).text)]
            assert urls
            assert all(url.startswith("/kiln/") for url in urls), urls


def test_install_refuses_an_app_with_fastapis_own_pages() -> None:
    with pytest.raises(ValueError, match="docs_url=None"):
        docs.install(FastAPI())


def test_the_bundled_files_are_upstreams_releases() -> None:
    # Exactly the files listed, no source maps, each as the npm tarball has it.
    on_disk = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in docs_assets.STATIC.iterdir()
    }
    assert on_disk == docs_assets.FILES
    # The versions noted are the versions inside.
    swagger = (docs_assets.STATIC / docs_assets.SWAGGER_JS).read_text(encoding="utf-8")
    assert f'PACKAGE_VERSION:"{docs_assets.SWAGGER_UI_VERSION}"' in swagger
    redoc = (docs_assets.STATIC / docs_assets.REDOC_JS).read_text(encoding="utf-8")
    assert f'"{docs_assets.REDOC_VERSION}"' in redoc
    # OpenAPI 3.1, which FastAPI writes, renders in Swagger UI from 5.0 on.
    assert int(docs_assets.SWAGGER_UI_VERSION.split(".")[0]) >= 5


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """The predictor on a real port of 127.0.0.1, for a browser."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(predictor(tmp_path), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the predictor did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_swagger_ui_renders_the_operations_in_a_browser_without_network(
    served: str, tmp_path: Path
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(
            "no chromium on PATH (Debian's `chromium` package): the browser check needs one"
        )
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            f"--user-data-dir={tmp_path / 'profile'}",
            # Everything but 127.0.0.1 goes to a proxy that is not there, and no name resolves.
            "--proxy-server=http://127.0.0.1:9",
            "--proxy-bypass-list=127.0.0.1",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{served}{docs.DOCS_URL}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "HOME": str(tmp_path)},
    ).stdout
    assert 'class="swagger-ui' in dom
    # The operations of the predictor's document, each as Swagger UI draws one.
    assert "opblock-summary" in dom
    assert "/v2/health/live" in dom
    assert "Prometheus metrics" in dom
