"""services/predict/cache.py: the bounded LRU of loaded models, refs that follow the
registry, versions that cannot be served, and an artifact store or a registry database
that cannot be reached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry.errors import ArtifactStoreUnavailable, RegistryUnavailable
from services.predict.app import create_app
from services.predict.source import Ref, ResolvedModel
from tests.unit.services.predict.models import (
    BIN_V1,
    BIN_V2,
    IRIS,
    ROWS,
    MemorySource,
    infer_body,
    make_settings,
    metric_sample,
)


def test_lru_eviction_at_max_loaded_models(tmp_path: Path, source: MemorySource) -> None:
    app = create_app(make_settings(tmp_path, predict_cache_max_models=2), source=source)
    with TestClient(app) as c:
        for path in ("cancer/versions/1", "cancer/versions/2", "cancer/versions/1", "iris"):
            assert c.post(f"/v2/models/{path}/infer", json=infer_body(ROWS)).status_code == 200
        assert app.state.model_cache.loaded() == [("cancer", 1), ("iris", 1)]
        assert source.loads == [("cancer", 1), ("cancer", 2), ("iris", 1)]

        c.post("/v2/models/cancer/versions/2/infer", json=infer_body(ROWS))
        assert source.loads[-1] == ("cancer", 2)
        assert app.state.model_cache.loaded() == [("iris", 1), ("cancer", 2)]


def test_cache_is_bounded_by_bytes(tmp_path: Path, source: MemorySource) -> None:
    limit = len(BIN_V1.onnx) + len(IRIS.onnx) - 1  # room for one of the two at a time
    settings = make_settings(tmp_path, predict_cache_max_bytes=limit)
    with TestClient(create_app(settings, source=source)) as c:
        c.post("/v2/models/cancer/versions/1/infer", json=infer_body(ROWS))
        c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        text = c.get("/metrics").text
        assert metric_sample(text, "kiln_predict_loaded_models", {}) == 1
        assert metric_sample(text, "kiln_predict_loaded_bytes", {}) == len(IRIS.onnx)
        c.post("/v2/models/cancer/versions/1/infer", json=infer_body(ROWS))
    assert source.loads == [("cancer", 1), ("iris", 1), ("cancer", 1)]


def test_newest_version_follows_the_registry_within_the_refresh_interval(
    tmp_path: Path,
) -> None:
    source = MemorySource()
    source.add("cancer", 1, BIN_V1.onnx, BIN_V1.signature)
    app = create_app(make_settings(tmp_path, predict_refresh_interval_s=0.05), source=source)
    with TestClient(app) as c:
        first = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
        assert first.json()["model_version"] == "1"
        source.add("cancer", 2, BIN_V2.onnx, BIN_V2.signature)
        deadline = time.monotonic() + 5
        served = "1"
        while served == "1" and time.monotonic() < deadline:
            response = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
            served = response.json()["model_version"]
        assert served == "2"


def test_a_deleted_version_stops_being_served_within_the_refresh_interval(
    tmp_path: Path, source: MemorySource
) -> None:
    app = create_app(make_settings(tmp_path, predict_refresh_interval_s=0.05), source=source)
    with TestClient(app) as c:
        url = "/v2/models/cancer/versions/2/infer"
        assert c.post(url, json=infer_body(ROWS)).status_code == 200
        del source.models["cancer"][2]
        deadline = time.monotonic() + 5
        while ("cancer", 2) in app.state.model_cache.loaded() and time.monotonic() < deadline:
            time.sleep(0.05)
        response = c.post(url, json=infer_body(ROWS))
        assert response.status_code == 404
        assert "version 2 of model 'cancer' not found" in response.json()["error"]


def test_alias_move_to_a_broken_version_keeps_serving_the_old_one(
    tmp_path: Path, source: MemorySource
) -> None:
    source.add("cancer", 3, b"not onnx", BIN_V1.signature)
    source.aliases[("cancer", "production")] = 1
    settings = make_settings(tmp_path, predict_refresh_interval_s=0.05)
    with TestClient(create_app(settings, source=source)) as c:
        url = "/v2/models/cancer@production"
        assert c.post(f"{url}/infer", json=infer_body(ROWS)).json()["model_version"] == "1"
        source.aliases[("cancer", "production")] = 3
        deadline = time.monotonic() + 5
        meta = c.get(url).json()
        while "pending_error" not in meta["parameters"] and time.monotonic() < deadline:
            time.sleep(0.05)
            meta = c.get(url).json()
        assert meta["versions"] == ["1"]
        assert meta["parameters"]["pending_version"] == 3
        assert "cannot load model 'cancer' version 3" in meta["parameters"]["pending_error"]
        assert c.post(f"{url}/infer", json=infer_body(ROWS)).json()["model_version"] == "1"
        text = c.get("/metrics").text
        failed = {"ref": "cancer@production", "version": "3"}
        assert metric_sample(text, "kiln_predict_alias_switch_failures_total", failed) == 1


def test_a_broken_version_is_not_rebuilt_on_every_request(
    tmp_path: Path, source: MemorySource
) -> None:
    source.add("cancer", 3, b"not onnx", BIN_V1.signature)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        for _ in range(3):
            response = c.post("/v2/models/cancer/versions/3/infer", json=infer_body(ROWS))
            assert response.status_code == 500
            assert "ONNX Runtime cannot load model 'cancer' version 3" in response.json()["error"]
    assert source.loads.count(("cancer", 3)) == 1


class StoreDownSource(MemorySource):
    def load(self, name: str, version: int) -> ResolvedModel:
        raise ArtifactStoreUnavailable(
            f"the artifact store holding {name} v{version} does not answer"
        )


def test_an_unreachable_artifact_store_is_a_503_that_says_so(tmp_path: Path) -> None:
    source = StoreDownSource()
    source.add("cancer", 1, BIN_V1.onnx, BIN_V1.signature)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        response = c.post("/v2/models/cancer/infer", json=infer_body(ROWS))
        assert response.status_code == 503
        error = response.json()["error"]
        assert "model 'cancer' version 1 cannot be read now" in error
        assert "holding cancer v1 does not answer" in error


class OutageSource(MemorySource):
    """A registry whose database goes away while ``down`` is set, as RegistrySource
    reports it (registry.errors.RegistryUnavailable)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls_down = 0
        self.calls_up = 0

    def _reach(self) -> None:
        if self.down:
            self.calls_down += 1
            raise RegistryUnavailable("the registry database is not answering", retry_after_s=2)
        self.calls_up += 1

    def resolve(self, ref: Ref) -> int:
        self._reach()
        return super().resolve(ref)

    def resolve_many(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        self._reach()
        return super().resolve_many(refs)

    def existing(self, keys: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        self._reach()
        return super().existing(keys)

    def load(self, name: str, version: int) -> ResolvedModel:
        self._reach()
        return super().load(name, version)


def test_a_registry_outage_is_a_503_that_is_not_remembered_once_the_registry_is_back(
    tmp_path: Path,
) -> None:
    source = OutageSource()
    source.add("cancer", 1, BIN_V1.onnx, BIN_V1.signature)
    source.add("iris", 1, IRIS.onnx, IRIS.signature)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        assert c.post("/v2/models/iris/infer", json=infer_body(ROWS)).status_code == 200
        source.down = True
        for path in ("cancer", "cancer/versions/1"):  # a ref to resolve; a version to load
            response = c.post(f"/v2/models/{path}/infer", json=infer_body(ROWS))
            assert response.status_code == 503
            assert "registry database is not answering" in response.json()["error"]
            assert response.headers["retry-after"] == "2"
        # A model already loaded serves on.
        assert c.post("/v2/models/iris/infer", json=infer_body(ROWS)).status_code == 200
        source.down = False
        for path in ("cancer", "cancer/versions/1"):
            assert c.post(f"/v2/models/{path}/infer", json=infer_body(ROWS)).status_code == 200


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the refresher did not get there in 10 s"
        time.sleep(0.01)


def test_the_refresher_says_once_that_the_registry_is_down_and_once_that_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = OutageSource()
    source.add("cancer", 1, BIN_V1.onnx, BIN_V1.signature)
    settings = make_settings(tmp_path, predict_refresh_interval_s=0.01)
    with (
        caplog.at_level(logging.INFO, logger="kiln.predict"),
        TestClient(create_app(settings, source=source)) as c,
    ):
        assert c.post("/v2/models/cancer/infer", json=infer_body(ROWS)).status_code == 200
        source.down = True
        _wait_for(lambda: source.calls_down >= 20)
        up_before = source.calls_up
        source.down = False
        _wait_for(lambda: source.calls_up >= up_before + 4)
    lines = [r for r in caplog.records if r.name == "kiln.predict"]
    assert [r.getMessage().split(";")[0] for r in lines] == [
        "refreshing model references failed",
        "refreshing model references works again",
    ]
    assert "registry database is not answering" in lines[0].getMessage()
    assert all(r.exc_info is None for r in lines)
