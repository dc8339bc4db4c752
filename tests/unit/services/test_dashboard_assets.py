"""The dashboard's files (services/dashboard): served at /ui/ with nothing from another
origin, without a key (the page asks for one), and shipped in the wheel."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services import dashboard
from services.api.app import create_app
from services.api.dashboard import CONTENT_SECURITY_POLICY
from tests.conftest import api_settings

ROOT = Path(__file__).resolve().parents[3]
# A URL with a scheme or a protocol-relative one; the SVG namespace is a name, not a load.
ELSEWHERE = re.compile(r"""(?:https?:)?//[\w.-]+\.[a-z]{2,}""")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, sqlite_url: str) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("kiln")
    with TestClient(create_app(api_settings(home, sqlite_url, kiln_auth="required"))) as c:
        yield c


@pytest.mark.parametrize("name", dashboard.FILES)
def test_no_file_names_another_origin(name: str) -> None:
    text = (dashboard.STATIC / name).read_text().replace(SVG_NAMESPACE, "")
    assert not ELSEWHERE.findall(text), name


def test_every_file_in_the_folder_is_listed() -> None:
    assert sorted(p.name for p in dashboard.STATIC.iterdir()) == sorted(dashboard.FILES)


def test_the_page_and_its_files_are_served_without_a_key(client: TestClient) -> None:
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    loaded = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', page.text)
    files = [src for src in loaded if not src.startswith("data:")]  # the empty favicon
    assert sorted(Path(src).name for src in files) == sorted(set(dashboard.FILES) - {"index.html"})
    for src in files:
        assert not src.startswith(("/", "http")), src  # relative: works under a root path
        asset = client.get(f"/ui/{src}")
        assert asset.status_code == 200, src
        assert asset.content == (dashboard.STATIC / Path(src).name).read_bytes()
    assert client.get("/ui", follow_redirects=False).headers["location"] == "ui/"


def test_the_api_routes_it_calls_still_need_a_key(client: TestClient) -> None:
    assert client.get("/jobs").status_code == 401
    assert client.post("/ui/predict/iris", json={"rows": [{}]}).status_code == 401


def test_the_files_ship_in_the_wheel() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    assert package_data["services.dashboard"] == ["static/*"]
