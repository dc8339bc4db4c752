"""The OpenAPI documents of both services: what FastAPI builds, finished in one place.

FastAPI documents what its routes declare. Three things a generated client needs it
cannot see, and `install` adds them when the document is first built:

- schemas that no route's parameters name: the predictor parses its bodies by hand
  (services/predict/serving.py), so its request bodies are described with
  `openapi_extra` and the models they refer to are added here;
- the answers every operation shares because of what it has, not what it does: a key
  check (401, 403), parameters or a body (422), a body (400, 413); each app says which
  with its own `finish` (services/problems.py for the API);
- nothing else: every other status is declared by the route that can answer it.

The committed copies are docs/openapi/{api,predict}.json (services/openapi_documents.py
writes them; tests/unit/services/test_openapi.py fails when they drift).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

OpenAPI = dict[str, Any]
REF = "#/components/schemas/{model}"


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def add_models(document: OpenAPI, models: Sequence[type[BaseModel]]) -> None:
    """Put ``models`` (and the models they use) into the document's components."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        for name, nested in schema.pop("$defs", {}).items():
            schemas.setdefault(name, nested)
        schemas.setdefault(model.__name__, schema)


def operations(document: OpenAPI) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation in the document."""
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return [
        (method, path, op)
        for path, item in document.get("paths", {}).items()
        for method, op in item.items()
        if method in methods
    ]


FASTAPI_422 = "HTTPValidationError"


def drop_fastapi_422(document: OpenAPI) -> None:
    """Remove the 422 FastAPI documents on every route with parameters, and its schemas:
    Kiln never sends that body (its own answers are declared where they happen)."""
    for _method, _path, op in operations(document):
        answers = op.get("responses", {})
        if FASTAPI_422 in json.dumps(answers.get("422", {})):
            del answers["422"]
    schemas = document.get("components", {}).get("schemas", {})
    if FASTAPI_422 not in json.dumps(document.get("paths", {})):
        schemas.pop(FASTAPI_422, None)
        schemas.pop("ValidationError", None)


def install(
    app: FastAPI,
    *,
    models: Sequence[type[BaseModel]] = (),
    finish: Callable[[OpenAPI], None] | None = None,
) -> None:
    """Build ``app``'s document as FastAPI does, then add ``models`` and run ``finish``."""
    build = app.openapi

    def openapi() -> OpenAPI:
        if app.openapi_schema is None:
            document = build()  # FastAPI keeps it in app.openapi_schema: changed in place
            add_models(document, models)
            drop_fastapi_422(document)
            if finish is not None:
                finish(document)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
