"""services/predict/app.py: the start (preloads before ready, a preload that cannot load
stops it) and what the predictor process imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.predict.app import create_app
from tests.unit.services.predict.models import ROWS, MemorySource, infer_body, make_settings


def test_preloaded_models_load_before_ready(tmp_path: Path, source: MemorySource) -> None:
    settings = make_settings(tmp_path, predict_preload="iris, cancer/1")
    with TestClient(create_app(settings, source=source)) as c:
        assert source.loads == [("iris", 1), ("cancer", 1)]
        assert c.get("/v2/health/ready").status_code == 200
        c.post("/v2/models/iris/infer", json=infer_body(ROWS))
        assert source.loads == [("iris", 1), ("cancer", 1)]


def test_a_preload_that_cannot_load_stops_the_start(tmp_path: Path, source: MemorySource) -> None:
    settings = make_settings(tmp_path, predict_preload="nope")
    with (
        pytest.raises(Exception, match="model 'nope' not found"),
        TestClient(create_app(settings, source=source)),
    ):
        pass


def test_predictor_never_imports_tensorflow_or_training() -> None:
    modules = [
        "app",
        "batching",
        "cache",
        "errors",
        "friendly",
        "infer",
        "metrics",
        "model",
        "registry_source",
        "responses",
        "serving",
        "source",
        "v2",
    ]
    code = (
        "import sys; from services.predict.app import create_app;"
        f"import {', '.join(f'services.predict.{m}' for m in modules)};"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf2onnx', 'training')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parents[4]
    assert (root / "services" / "predict" / "app.py").is_file()
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
