"""services/predict/registry_source.py: a registry database that does not answer is the
registry's own RegistryUnavailable (503, Retry-After), whatever the source was asked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from registry.errors import RegistryUnavailable
from services.predict.registry_source import RegistrySource
from tests.e2e.conftest import free_port
from tests.unit.services.predict.models import make_settings

CALLS: dict[str, Callable[[RegistrySource], Any]] = {
    "resolve": lambda s: s.resolve(("iris", None)),
    "resolve_many": lambda s: s.resolve_many([("iris", "production")]),
    "existing": lambda s: s.existing([("iris", 1)]),
    "load": lambda s: s.load("iris", 1),
}


@pytest.mark.parametrize("call", CALLS)
def test_a_database_that_refuses_connections_is_registry_unavailable(
    tmp_path: Path, call: str
) -> None:
    # Nothing listens on the port: what the predictor meets while PostgreSQL is down.
    url = f"postgresql+psycopg://kiln@127.0.0.1:{free_port()}/kiln"
    source = RegistrySource(make_settings(tmp_path, database_url=url))
    try:
        with pytest.raises(RegistryUnavailable, match="not answering now") as caught:
            CALLS[call](source)
    finally:
        source.close()
    assert caught.value.code == "registry_unavailable"
    assert caught.value.retry_after_s is not None
    assert "SELECT" not in caught.value.message
