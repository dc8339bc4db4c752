"""Both OpenAPI documents, the API's and the predictor's, fuzzed by schemathesis in-process:
no request a client can send, valid or not, gets a 5xx, and every answer has a status and
a content type that its operation documents (docs/openapi; a generated client parses
only those).

schemathesis generates requests from each operation's schema, valid ones and ones that
break it (negative, huge and out-of-range numbers, strings with NUL and control
characters, bodies of the wrong shape), and sends them to the app over ASGI. The API
runs on PostgreSQL, the stricter of its two databases (it refuses NUL in text and
integers past its column types). Path parameters are sometimes replaced by the names of
a seeded model, its version, job and dataset, so requests reach rows and not only 404s.

The number of examples per operation is bounded (KILN_FUZZ_EXAMPLES, 15 by default) and
the run is derandomised, so CI sees the same cases every time; raise it locally to
search further.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    status_code_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans
from sqlalchemy.orm import Session

from registry.db import make_engine
from services.api.app import create_app as create_api
from services.predict.app import create_app as create_predictor
from services.settings import ApiSettings, PredictSettings
from tests.conftest import api_settings
from tests.factories import make_dataset, make_job, make_version
from tests.unit.services.predict.models import make_settings, make_source

EXAMPLES = int(os.environ.get("KILN_FUZZ_EXAMPLES", "15"))
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
# Rows the API's registry holds, by the path parameter that names them.
SEEDED = {"name": "fuzzed", "version": 1, "job_id": "f" * 32, "dataset_id": "d" * 32}
SERVED = {"name": "iris", "version": "1"}


def _documents() -> tuple[schemathesis.BaseSchema, schemathesis.BaseSchema]:
    # The documents are what create_app() builds before it starts: no database, no models.
    # Each fixture below builds and starts the app the requests go to.
    api_app = create_api(ApiSettings(kiln_auth="off", database_url="sqlite://"))
    predictor_app = create_predictor(PredictSettings(), source=make_source())
    # Kiln runs open here (KILN_AUTH=off): requests carry no API key, valid or not.
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    api = schemathesis.openapi.from_dict(api_app.openapi(), config=config)
    predictor = schemathesis.openapi.from_dict(predictor_app.openapi(), config=config)
    api.app, predictor.app = api_app, predictor_app  # the ASGI transport
    return api, predictor


API, PREDICTOR = _documents()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


def _sometimes_seeded(names: dict[str, Any]) -> Any:
    """Path parameters as generated, or with the names of rows that exist."""

    def flatmap(_context: Any, path_parameters: dict[str, Any] | None) -> Any:
        real = {k: v for k, v in names.items() if k in (path_parameters or {})}
        if not real:
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, {**path_parameters, **real}])

    return flatmap


API.hook("flatmap_path_parameters")(_sometimes_seeded(SEEDED))
PREDICTOR.hook("flatmap_path_parameters")(_sometimes_seeded(SERVED))


@pytest.fixture(scope="module")
def api_app(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    engine = make_engine(postgres_url)
    with Session(engine, expire_on_commit=False) as s:
        dataset = make_dataset(s, id=SEEDED["dataset_id"])
        job = make_job(s, id=SEEDED["job_id"], model_name=SEEDED["name"], dataset_id=dataset.id)
        assert make_version(s, job=job).version == SEEDED["version"]
        s.commit()
    engine.dispose()
    home: Path = tmp_path_factory.mktemp("kiln")
    yield create_api(api_settings(home, postgres_url, kiln_auth="off"))
    # schemathesis starts an app's lifespan on its first request and keeps it.
    shutdown_lifespans()


@pytest.fixture(scope="module")
def predictor_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    yield create_predictor(make_settings(tmp_path_factory.mktemp("predict")), source=make_source())
    shutdown_lifespans()


@API.parametrize()
@SETTINGS
def test_the_api_answers_no_request_with_a_server_error(
    case: schemathesis.Case, api_app: FastAPI
) -> None:
    case.call_and_validate(app=api_app, checks=CHECKS)


@PREDICTOR.parametrize()
@SETTINGS
def test_the_predictor_answers_no_request_with_a_server_error(
    case: schemathesis.Case, predictor_app: FastAPI
) -> None:
    case.call_and_validate(app=predictor_app, checks=CHECKS)
