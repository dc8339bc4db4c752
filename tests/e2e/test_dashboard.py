"""The dashboard at /ui/, in a real browser (Debian's chromium, driven by Playwright),
against a real `kiln up` on the embedded default: train through the page and watch the
curves grow, read the fold table, the version's heatmap, compare two versions, promote an
alias and roll it back through confirm() dialogs, and predict with the form.

Every request the browser makes must go to the API's origin: anything else goes to a proxy
that is not there. Screenshots are checked for drawn content (colours of the curves and
of the heatmap), not only for the page's text. `KILN_UPDATE_SCREENSHOTS=1` also writes
them to docs/screenshots/ for the README.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import Stack, http

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
EPOCHS = 120
SPEC: dict[str, Any] = {
    "task": "multiclass",
    "layers": [
        {"type": "Dense", "units": 16, "activation": "relu"},
        {"type": "Dense", "units": 3, "activation": "softmax"},
    ],
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "loss": "sparse_categorical_crossentropy",
    "epochs": EPOCHS,
    "batch_size": 8,
    "k_folds": 3,
    "seed": 0,
}
SETOSA = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}
# The sum of the `data-points` of every learning curve drawn on the job page.
POINTS = """() => [...document.querySelectorAll('#curves path.curve')]
  .reduce((n, p) => n + Number(p.dataset.points), 0)"""


def _unavailable(why: str) -> None:
    # CI installs the dev extra and has chromium: there a missing one is a failure.
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (CI=true: the dashboard's browser test must run)")
    pytest.skip(why)


@dataclass
class Tab:
    """A browser tab, with what it asked for, the errors its scripts raised and the
    confirm() dialogs it showed (each accepted)."""

    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def go(self, url: str, fragment: str) -> None:
        # A new hash on the page already open is a same-document navigation (no load event).
        if self.page.url.split("#")[0] == url:
            self.page.evaluate("(h) => { location.hash = h; }", fragment)
        else:
            self.page.goto(url + fragment)


@pytest.fixture
def tab() -> Iterator[Tab]:
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        _unavailable("no chromium on PATH (Debian's `chromium` package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (the dev extra)")
    with sync_playwright() as pw:
        # The system's chromium: Playwright never downloads a browser here.
        browser = pw.chromium.launch(
            executable_path=browser_path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            ],
            # Everything but 127.0.0.1 goes to a proxy that is not there.
            proxy={"server": "http://127.0.0.1:9", "bypass": "127.0.0.1"},
        )
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        page.set_default_timeout(30_000)
        t = Tab(page)
        page.on("request", lambda r: t.requests.append(r.url))
        page.on("pageerror", lambda e: t.errors.append(str(e)))

        def accept(dialog: Any) -> None:
            t.dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)
        try:
            yield t
        finally:
            context.close()
            browser.close()


def png_pixels(data: bytes) -> list[tuple[int, int, int]]:
    """The RGB pixels of a screenshot."""
    with Image.open(io.BytesIO(data)) as image:
        return list(image.convert("RGB").getdata())


def near(pixels: list[tuple[int, int, int]], rgb: tuple[int, int, int], tol: int = 40) -> int:
    return sum(1 for p in pixels if all(abs(p[k] - rgb[k]) <= tol for k in range(3)))


# The screenshots the README shows (the others are only checked).
README_SHOTS = ("dashboard-job.png", "dashboard-version.png", "dashboard-model.png")


def shot(page: Any, selector: str, name: str, tmp_path: Path, *, full: bool = False) -> bytes:
    """A screenshot of one element (or of the page, for "page"); one the README shows is
    written to docs/screenshots/ when KILN_UPDATE_SCREENSHOTS=1."""
    path = tmp_path / name
    if selector == "page":
        data: bytes = page.screenshot(path=str(path), full_page=full)
    else:
        data = page.locator(selector).first.screenshot(path=str(path))
    if name in README_SHOTS and os.environ.get("KILN_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (SCREENSHOTS / name).write_bytes(data)
    return data


def wait_job(stack: Stack, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"{stack.api}/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end in {timeout}s:\n{stack.log_tail()}")


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_the_dashboard_trains_shows_promotes_and_predicts(
    stack: Stack, tab: Tab, tmp_path: Path
) -> None:
    page = tab.page
    ui = f"{stack.api}/ui/"
    page.goto(f"{stack.api}/ui")  # redirected to /ui/
    assert page.url.startswith(ui)

    # -- submit a job through the form -------------------------------------------------
    page.click("text=Train a model")
    page.fill("#submit-job input[name=model_name]", "dash")
    page.select_option("#submit-job select[name=dataset]", "sklearn:iris")
    page.fill("#submit-job textarea[name=spec]", json.dumps(SPEC))
    page.click("#submit-job button[type=submit]")
    page.wait_for_url(re.compile(r".*#/jobs/[0-9a-f]{32}$"))
    job_id = page.url.rsplit("/", 1)[1]

    # -- the curves grow while it trains ----------------------------------------------------
    page.wait_for_function(
        f"() => document.querySelector('#job-state [data-state=running]') && ({POINTS})() > 0",
        timeout=120_000,
    )
    first = page.evaluate(
        f"() => [({POINTS})(), document.querySelector('#job-state .badge').dataset.state]"
    )
    assert first[1] == "running", first
    page.wait_for_function(f"() => ({POINTS})() > {first[0]}", timeout=60_000)
    grown = page.evaluate(POINTS)
    assert grown > first[0]
    shot(page, "page", "dashboard-job-running.png", tmp_path)

    job = wait_job(stack, job_id)
    assert job["state"] == "succeeded", job
    page.wait_for_selector("#job-state [data-state=succeeded]")
    # Loss and accuracy, each: 3 folds × (training, validation) and the refit's training.
    for metric in ("loss", "accuracy"):
        curves = page.locator(f'figure[data-metric="{metric}"] path.curve')
        assert curves.count() == 7, metric
        points = [int(curves.nth(i).get_attribute("data-points")) for i in range(7)]
        assert points == [EPOCHS] * 7, (metric, points)
    loss_png = shot(page, 'figure[data-metric="loss"]', "dashboard-curves.png", tmp_path)
    pixels = png_pixels(loss_png)
    # Fold 1 blue, fold 2 red and fold 3 green, each drawn.
    for colour in ((31, 119, 180), (214, 39, 40), (44, 160, 44)):
        assert near(pixels, colour) > 30, colour

    # -- the fold table: each fold, then mean ± std as the registry stores them -------------
    version = http.get(f"{stack.api}/models/dash/versions/1").json()
    head = page.locator("#fold-table table.folds thead th").all_inner_texts()
    assert head == ["metric", "fold 1", "fold 2", "fold 3", "mean ± std"]
    row = page.locator("#fold-table tr", has_text="accuracy").first.locator("td").all_inner_texts()
    acc = version["metrics"]["accuracy"]
    assert row[-1] == f"{acc['mean']:.4f} ± {acc['std']:.4f}", row
    folds = sorted(version["folds"], key=lambda f: f["fold"])
    assert row[1:4] == [f"{f['metrics']['accuracy']:.4f}" for f in folds]
    shot(page, "page", "dashboard-job.png", tmp_path)

    # -- the version page: heatmap, parity, signature, lineage, artifacts ---------------------
    page.click("#job-version")
    page.wait_for_selector("svg.heatmap g.cell")
    cells = page.locator("svg.heatmap g.cell")
    assert cells.count() == 9
    counts = [int(cells.nth(i).get_attribute("data-count")) for i in range(9)]
    assert sum(counts) == 150  # every iris row once, in the fold that held it out
    expected = [
        [sum(f["metrics"]["confusion_matrix"][i][j] for f in folds) for j in range(3)]
        for i in range(3)
    ]
    assert counts == [c for r in expected for c in r]
    heat = png_pixels(shot(page, "#heatmap", "dashboard-heatmap.png", tmp_path))
    assert len(set(heat)) > 5
    # The diagonal's deep blue and the empty cells' near-white are both drawn.
    assert near(heat, (8, 69, 148), tol=50) > 200
    assert near(heat, (247, 251, 255), tol=6) > 200
    assert page.inner_text("#parity-passed") == "yes"
    assert "features" in page.inner_text("table.signature")
    assert "sepal length (cm)" in page.inner_text("main")
    assert version["artifacts"]["onnx"]["sha256"] in page.inner_text("table.artifacts")
    assert job_id[:8] in page.inner_text("main")
    page.set_viewport_size({"width": 1280, "height": 760})
    shot(page, "page", "dashboard-version.png", tmp_path)
    # The evaluation report opens in a tab of its own, its curves drawn in the page.
    with page.context.expect_page() as opened:
        page.click("#open-report")
    report = opened.value
    report.wait_for_selector("svg")
    assert "Evaluation report: dash version 1" in report.inner_text("h1")
    assert report.locator("figure svg polyline").count() >= 3 * 3  # ROC, PR, calibration
    report.close()

    # -- a second, quick version, and the two side by side ------------------------------------
    quick = {**SPEC, "epochs": 5}
    second = http.post(
        f"{stack.api}/jobs", json={"model_name": "dash", "dataset": "sklearn:iris", "spec": quick}
    )
    assert second.status_code == 202, second.text
    assert wait_job(stack, second.json()["id"])["state"] == "succeeded"
    tab.go(ui, "#/models/dash")
    page.wait_for_selector("table.versions input.pick")
    page.check('table.versions input.pick[value="1"]')
    page.check('table.versions input.pick[value="2"]')
    page.click("#compare")
    page.wait_for_selector("table.compare")
    assert page.url.endswith("#/models/dash/compare/1,2")
    heads = page.locator("table.compare thead th").all_inner_texts()
    assert heads == ["metric", "v1 (baseline)", "v2"]
    compare = http.get(f"{stack.api}/models/dash/compare", params={"versions": "1,2"}).json()
    acc2 = compare["metrics"]["accuracy"][1]
    cells_text = page.locator("table.compare tr", has_text="accuracy").first.inner_text()
    assert f"{acc2['mean']:.4f} ± {acc2['std']:.4f}" in cells_text

    # -- promote, promote again, roll back: each through a confirm() ------------------------
    tab.go(ui, "#/models/dash")
    page.wait_for_selector("#promote")

    def promote(to: int) -> None:
        page.fill("#promote input[name=alias]", "production")
        page.select_option("#promote select[name=version]", str(to))
        page.click("#promote button[type=submit]")
        page.wait_for_selector(f'a.alias-version[data-alias="production"]:text("v{to}")')

    promote(1)
    promote(2)
    assert http.get(f"{stack.api}/models/dash/aliases/production").json()["version"] == 2
    page.click('button.rollback[data-alias="production"]')
    page.wait_for_selector('a.alias-version[data-alias="production"]:text("v1")')
    assert http.get(f"{stack.api}/models/dash/aliases/production").json()["version"] == 1
    assert len(tab.dialogs) == 3, tab.dialogs
    assert "production" in tab.dialogs[0], tab.dialogs
    page.wait_for_function(
        "() => document.querySelectorAll('table.alias-history tbody tr').length === 3"
    )
    history = page.inner_text("table.alias-history")
    assert "rolled back from the dashboard" in history

    # -- predict one row through the form ------------------------------------------------------
    for feature, value in SETOSA.items():
        page.fill(f'#predict-form input[data-feature="{feature}"]', str(value))
    page.select_option("#predict-form select[name=target]", "@production")
    page.click("#predict-form button[type=submit]")
    page.wait_for_selector("#predicted-label")
    direct = http.post(f"{stack.predict}/predict/dash@production", json={"rows": [SETOSA]}).json()
    assert direct["model_version"] == 1
    assert page.inner_text("#predicted-label") == str(direct["predictions"][0]["label"]) == "0"
    assert "dash v1" in page.inner_text("#prediction")
    assert page.locator("#prediction svg.bars rect.bar").count() == 3
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "page", "dashboard-model.png", tmp_path, full=True)
    # The probability bars: the predicted class's, near 1, long and in the accent blue.
    bars = png_pixels(shot(page, "#prediction svg.bars", "dashboard-bars.png", tmp_path))
    assert near(bars, (11, 92, 173), tol=12) > 1500

    # -- nothing went anywhere but the API, and the page raised nothing ---------------------
    assert tab.errors == []
    others = [
        u
        for u in tab.requests
        if not u.startswith((stack.api + "/", "data:", f"blob:{stack.api}/"))
    ]
    assert others == [], others


@pytest.mark.parametrize("stack", ["embedded"], indirect=True)
def test_a_search_shows_its_leaderboard_and_refit(stack: Stack, tab: Tab) -> None:
    body = {
        "model_name": "dash-search",
        "dataset": "sklearn:iris",
        "spec": {**SPEC, "epochs": 5},
        "space": {"units": [4, 16]},
        "budget": {"trials": 2, "parallel": 1},
        "options": {"prune": False},
    }
    accepted = http.post(f"{stack.api}/searches", json=body)
    assert accepted.status_code == 202, accepted.text
    search_id = accepted.json()["id"]
    page = tab.page
    tab.go(f"{stack.api}/ui/", "#/searches")
    page.click(f"a.search-link[title='{search_id}']")
    page.wait_for_url(re.compile(rf".*#/searches/{search_id}$"))
    # The page follows the search to its end: both trials on the board, the refit's version.
    page.wait_for_selector(".refit [data-state=succeeded]", timeout=180_000)
    search = http.get(f"{stack.api}/searches/{search_id}").json()
    rows = page.locator("table.leaderboard tbody tr")
    assert rows.count() == 2
    for i, trial in enumerate(search["leaderboard"]):
        cells = rows.nth(i).locator("td").all_inner_texts()
        f1 = trial["metrics"]["f1"]
        assert cells[1] == str(trial["trial"])
        assert cells[2].startswith("complete")
        assert cells[3] == f"{f1['mean']:.4f} ± {f1['std']:.4f}"
        assert f"units={trial['params']['units']}" in cells[5]
    version = search["refit"]["model_version"]
    assert page.locator(f"a[href='#/models/dash-search/versions/{version}']").count() == 1
    assert tab.errors == []
