"""Fixtures of the predictor tests: an in-memory source of tiny models and apps serving it.

The models and helpers themselves are in tests/unit/services/predict/models.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.predict.app import create_app
from tests.unit.services.predict.models import (
    IMG_ONNX,
    IMG_SIG,
    MemorySource,
    make_settings,
    make_source,
)


@pytest.fixture
def source() -> MemorySource:
    return make_source()


@pytest.fixture
def client(tmp_path: Path, source: MemorySource) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        yield c


@pytest.fixture
def img_client(tmp_path: Path, source: MemorySource) -> Iterator[TestClient]:
    source.add("img", 1, IMG_ONNX, IMG_SIG)
    with TestClient(create_app(make_settings(tmp_path), source=source)) as c:
        yield c
