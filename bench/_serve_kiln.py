"""Kiln's predictor serving one model from files: `uvicorn bench._serve_kiln:app --factory`.

Reads KILN_BENCH_ONNX, KILN_BENCH_SIGNATURE and KILN_BENCH_MODEL (the model name) at
start, so the bench needs no registry database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI

from services.predict.app import create_app
from services.predict.source import ModelNotFound, ResolvedModel, VersionNotFound
from services.settings import PredictSettings


class FileSource:
    """Version 1 of one model, read from an ONNX file and a signature JSON file."""

    def __init__(self, name: str, onnx_path: Path, signature_path: Path) -> None:
        self.name = name
        self.onnx_path = onnx_path
        self.signature_path = signature_path

    def latest_version(self, name: str) -> int:
        if name != self.name:
            raise ModelNotFound(name, known=[self.name])
        return 1

    def load(self, name: str, version: int) -> ResolvedModel:
        if name != self.name:
            raise ModelNotFound(name, known=[self.name])
        if version != 1:
            raise VersionNotFound(name, version, known=[1])
        return ResolvedModel(
            name=name,
            version=1,
            onnx_bytes=self.onnx_path.read_bytes(),
            signature=json.loads(self.signature_path.read_text()),
        )


def app() -> FastAPI:
    source = FileSource(
        os.environ.get("KILN_BENCH_MODEL", "mlp"),
        Path(os.environ["KILN_BENCH_ONNX"]),
        Path(os.environ["KILN_BENCH_SIGNATURE"]),
    )
    return create_app(PredictSettings(), source=source)
