"""services/problems.py: every domain error in the code base answers with the status it
is meant to, in the API's problem+json and in the predictor's OIP body alike.

The test walks every module of every package, collects each subclass of
core.errors.KilnError, and checks it against INTENDED: an error class added without
saying here what it should answer fails the test, instead of answering 500 by omission.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.errors import ErrorKind, KilnError
from registry.db import make_engine
from services import problems
from services.predict import responses
from tests.e2e.conftest import free_port

INTENDED: dict[str, int] = {
    # core.errors: the base, whose kind is internal
    "internal_error": 500,
    # core.access: keys and scopes
    "unauthenticated": 401,
    "scope_missing": 403,
    "model_not_allowed": 403,
    "cross_site_request": 403,
    "keys_unavailable": 503,
    # registry.errors
    "dataset_not_found": 404,
    "job_not_found": 404,
    "search_not_found": 404,
    "report_not_found": 404,
    "profile_not_found": 404,
    "drift_unavailable": 422,
    "report_exists": 409,
    "key_not_found": 404,
    "model_not_found": 404,
    "version_not_found": 404,
    "alias_not_found": 404,
    "tag_not_found": 404,
    "artifact_missing": 404,
    "artifact_corrupt": 500,
    "artifact_store_unavailable": 503,
    "registry_unavailable": 503,
    "invalid_state": 409,
    "no_previous_version": 409,
    "version_in_use": 409,
    "alias_contention": 409,
    "gate_refused": 409,
    "not_comparable": 409,
    "gate_metric_unknown": 422,
    "alias_invalid": 422,
    "tag_invalid": 422,
    "metric_unknown": 422,
    # training.errors: what data and specs are refused with at the door
    "data_invalid": 422,
    "upload_empty": 422,
    "upload_not_csv": 422,
    "target_missing": 422,
    "missing_values": 422,
    "non_numeric_features": 422,
    "upload_not_npz": 422,
    "images_invalid": 422,
    "data_too_large": 413,
    "spec_data_mismatch": 422,
    # training.errors: a job's failure reasons (never an HTTP answer, but one if they were)
    "non_finite_loss": 422,
    "parity_failed": 500,
    "cancelled": 409,
    "fold_process_died": 503,
    # workers.search_trial: a trial's failure reasons
    "trial_spec_invalid": 422,
    "folds_differ": 409,
    # services.api.errors
    "unsupported_media_type": 415,
    "upload_too_large": 413,
    "unknown_builtin_dataset": 404,
    "versions_invalid": 422,
    "spec_over_limit": 422,
    "search_invalid": 422,
    "rate_limited": 429,
    "too_many_active_jobs": 429,
    "idempotency_key_reused": 409,
    "idempotency_key_in_progress": 409,
    "predictor_unreachable": 503,
    # services.predict.errors
    "infer_request_invalid": 400,
    "rows_invalid": 422,
    "request_too_large": 413,
    "model_load_failed": 500,
    "output_not_finite": 500,
    "overloaded": 503,
    "predict_rate_limited": 429,
}
# Importing these runs a process's entry point (the worker's Celery app reads settings and
# makes folders) or Alembic's environment; they define no errors.
SKIP = ("workers.worker", "registry.migrations")


PACKAGES = ("core", "registry", "training", "workers", "services")


def _import_everything() -> None:
    for root in PACKAGES:
        package = importlib.import_module(root)
        for info in pkgutil.walk_packages(package.__path__, f"{root}."):
            if not info.name.startswith(SKIP):
                importlib.import_module(info.name)


def _subclasses(cls: type[KilnError]) -> set[type[KilnError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def error_classes() -> list[type[KilnError]]:
    _import_everything()
    # Kiln's own: tests define error classes of their own too.
    ours = {c for c in _subclasses(KilnError) if c.__module__.split(".")[0] in PACKAGES}
    return sorted({KilnError} | ours, key=lambda c: c.code)


CLASSES = error_classes()


def test_every_kind_has_a_status() -> None:
    assert set(problems.STATUS) == set(ErrorKind)


def test_every_error_class_is_listed_with_the_status_it_should_answer() -> None:
    codes = [cls.code for cls in CLASSES]
    assert len(codes) == len(set(codes)), "two error classes share a code"
    assert set(codes) == set(INTENDED), (
        f"not listed here: {sorted(set(codes) - set(INTENDED))}; "
        f"listed but gone: {sorted(set(INTENDED) - set(codes))}"
    )


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.code)
def test_each_error_answers_its_status_from_the_api_and_the_predictor(
    cls: type[KilnError],
) -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    def boom() -> None:
        raise cls("what went wrong, and what was expected")

    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.get("/boom")

    assert resp.status_code == INTENDED[cls.code]
    assert resp.headers["content-type"] == problems.PROBLEM_JSON
    assert resp.json()["code"] == cls.code
    assert resp.json()["detail"] == "what went wrong, and what was expected"
    status, body = responses.error(cls("what went wrong"))
    assert (status, body) == (INTENDED[cls.code], b'{"error":"what went wrong"}')


def test_an_error_that_says_when_to_retry_sends_retry_after_from_both_services() -> None:
    app = FastAPI()
    problems.install(app)

    @app.get("/busy")
    def busy() -> None:
        raise KilnError("try later", retry_after_s=2.2)

    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/busy").headers["retry-after"] == "3"
    assert responses.error_response(KilnError("x", retry_after_s=0.1)).headers["retry-after"] == "1"
    assert "retry-after" not in responses.error_response(KilnError("x")).headers


def _answer(route: Callable[[], None]) -> tuple[int, dict[str, str], dict[str, object]]:
    app = FastAPI()
    problems.install(app)
    app.get("/route")(route)
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.get("/route")
    return resp.status_code, dict(resp.headers), resp.json()


def _refused() -> None:
    # A PostgreSQL that is not running: what a request meets during an outage.
    engine = make_engine(f"postgresql+psycopg://kiln:secret@127.0.0.1:{free_port()}/kiln")
    with engine.connect() as conn:
        conn.execute(text("SELECT name FROM registered_model WHERE name = :n"), {"n": "iris"})


def _dropped() -> None:
    raise DBAPIError(
        "SELECT name FROM registered_model", {"n": "iris"}, OSError("gone"), True, True
    )


def _pool_exhausted(tmp_path: Path) -> Callable[[], None]:
    engine = make_engine(
        f"sqlite:///{tmp_path / 'kiln.db'}", pool_size=1, max_overflow=0, pool_timeout=0.01
    )

    def route() -> None:
        with engine.connect(), engine.connect():  # the second waits for the first
            pass

    return route


@pytest.mark.parametrize("cause", ["refused", "dropped", "pool_exhausted"])
def test_a_database_that_does_not_answer_is_a_503_with_retry_after_and_one_log_line(
    cause: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    route = {"refused": _refused, "dropped": _dropped}.get(cause) or _pool_exhausted(tmp_path)
    with caplog.at_level(logging.WARNING, logger="kiln.api"):
        status, headers, body = _answer(route)

    assert status == 503
    assert headers["content-type"] == problems.PROBLEM_JSON
    assert int(headers["retry-after"]) >= 1
    assert body["code"] == "registry_unavailable"
    assert "try again" in str(body["detail"])
    # Neither the statement nor its parameters nor the server's address reach the client.
    for secret in ("registered_model", "iris", "127.0.0.1", "secret"):
        assert secret not in str(body)
    lines = [r for r in caplog.records if r.name == "kiln.api"]
    assert len(lines) == 1
    assert lines[0].levelno == logging.WARNING
    assert lines[0].exc_info is None
    assert "GET /route answered 503" in lines[0].getMessage()


def test_other_database_errors_and_bugs_are_a_500_problem_without_details(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'kiln.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (name TEXT UNIQUE)"))

    def duplicate() -> None:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES ('secret'), ('secret')"))

    def bug() -> None:
        raise RuntimeError("secret internals")

    for route in (duplicate, bug):
        status, headers, body = _answer(route)
        assert status == 500
        assert headers["content-type"] == problems.PROBLEM_JSON
        assert body["code"] == "internal_error"
        assert body["detail"] == "internal server error"
        assert "retry-after" not in headers
