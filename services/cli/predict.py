"""`kiln predict`: named-feature rows through the prediction service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.cli import http
from services.cli.http import DEFAULT_PREDICT, PredictUrl

Rows = Annotated[Path, typer.Option(help="JSON file: a list of {feature: value} objects.")]
Version = Annotated[int | None, typer.Option(help="Defaults to the newest.")]


def predict(
    model: str, rows: Rows, version: Version = None, predict_url: PredictUrl = DEFAULT_PREDICT
) -> None:
    """Predict with named features through the prediction service."""
    path = f"/predict/{model}" + (f"/versions/{version}" if version else "")
    with http.client(predict_url) as c:
        http.print_json(http.check(c.post(path, json={"rows": json.loads(rows.read_text())})))
