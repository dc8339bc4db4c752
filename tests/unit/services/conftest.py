from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from tests.conftest import api_settings


@pytest.fixture(scope="module")
def client(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API in-process on the parametrised database, with no broker and no sweeper,
    open (no key needed) on both: tests of keys and scopes make their own
    (tests/unit/services/api/test_auth.py)."""
    home: Path = tmp_path_factory.mktemp("kiln")
    with TestClient(create_app(api_settings(home, db_url, kiln_auth="off"))) as c:
        yield c
