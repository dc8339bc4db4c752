"""services/openapi.py and openapi_documents.py: the committed OpenAPI documents are what the apps serve, a client
generated from each has every operation and model, and every operation documents the
error answers it can give, in the body it gives them in."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from services import openapi, openapi_documents
from tests.generated_client import DOCUMENTS, generate

SERVED = openapi_documents.documents()
COMMITTED = {name: json.loads((DOCUMENTS / name).read_text()) for name in SERVED}


@pytest.mark.parametrize("name", sorted(SERVED))
def test_the_committed_document_is_the_served_one(name: str) -> None:
    committed = (DOCUMENTS / name).read_text()
    served = openapi_documents.render(SERVED[name])
    if committed != served:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    served.splitlines(keepends=True),
                    f"docs/openapi/{name} (committed)",
                    f"docs/openapi/{name} (served)",
                )
            )[:80]
        )
        pytest.fail(
            f"docs/openapi/{name} is not what the app serves; if the change is meant, run "
            f"`{openapi_documents.REGENERATE}` and commit the document.\n{diff}"
        )


def test_the_regenerate_command_writes_the_served_documents(tmp_path: Path) -> None:
    assert openapi_documents.main(["--check", "--out", str(tmp_path)]) == 1  # nothing there yet
    assert openapi_documents.main(["--out", str(tmp_path)]) == 0
    for name, document in SERVED.items():
        assert (tmp_path / name).read_text() == openapi_documents.render(document)
    assert openapi_documents.main(["--check", "--out", str(tmp_path)]) == 0


@pytest.mark.parametrize("name", sorted(SERVED))
def test_a_client_generates_without_warnings(name: str, tmp_path: Path) -> None:
    output = generate(DOCUMENTS / name, tmp_path, "client")
    # The generator drops what it cannot type (a schema, a whole endpoint) with a warning.
    assert "warning" not in output.lower(), output
    package = tmp_path / "client"
    for _method, _path, op in openapi.operations(COMMITTED[name]):
        module = op["operationId"].replace("-", "_")
        assert list(package.glob(f"api/*/{module}.py")), f"{module} was not generated"
    if name == "api.json":
        models = (package / "models" / "body_datasets_upload_dataset.py").read_text()
        assert "file: File" in models  # a file, not a string
        assert (package / "models" / "model_spec.py").exists()


def _errors(document: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (method, path, status, answer)
        for method, path, op in openapi.operations(document)
        for status, answer in op["responses"].items()
        if status.startswith(("4", "5")) and path != "/v2/health/ready"
    ]


def test_api_errors_are_problems_in_problem_json() -> None:
    doc = COMMITTED["api.json"]
    for method, path, status, answer in _errors(doc):
        assert answer["content"] == {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        }, (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_predictor_errors_are_the_protocols_error_body() -> None:
    doc = COMMITTED["predict.json"]
    for method, path, status, answer in _errors(doc):
        assert answer["content"] == {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        }, (method, path, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]


@pytest.mark.parametrize("name", sorted(SERVED))
def test_key_errors_only_where_keys_are_checked(name: str) -> None:
    for method, path, op in openapi.operations(COMMITTED[name]):
        checked = bool(op.get("security"))
        for status in ("401", "403"):
            assert (status in op["responses"]) == checked, (method, path, status)


def test_every_body_the_predictor_reads_is_documented() -> None:
    doc = COMMITTED["predict.json"]
    for method, path, op in openapi.operations(doc):
        if method == "post":
            content = op["requestBody"]["content"]
            assert "application/json" in content, path
            if path.endswith("/infer"):
                assert "application/octet-stream" in content, path


def test_documents_do_not_depend_on_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILN_AUTH", "required")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1000")
    monkeypatch.setenv("PREDICT_MAX_REQUEST_BYTES", "1000")
    assert openapi_documents.documents() == SERVED
