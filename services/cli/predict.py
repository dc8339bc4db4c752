"""`kiln predict`: named-feature rows through the prediction service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli import files, http
from services.cli.http import DEFAULT_PREDICT, PredictUrl
from services.cli.output import Json, emit_json, print_json

Rows = Annotated[Path, typer.Option(help="JSON file: a list of {feature: value} objects.")]
Version = Annotated[int | None, typer.Option(help="Defaults to the newest.")]


def predict(
    model: str,
    rows: Rows,
    version: Version = None,
    json: Json = False,
    predict_url: PredictUrl = DEFAULT_PREDICT,
) -> None:
    """Predict with named features through the prediction service (MODEL or MODEL@ALIAS)."""
    path = f"/predict/{model}" + (f"/versions/{version}" if version else "")
    body = {"rows": files.read_json(rows, "--rows")}
    with http.client(predict_url, http.PREDICT) as c:
        answer = http.check(c.post(path, json=body))
    if json:
        emit_json(answer)
        return
    print_json(answer)
