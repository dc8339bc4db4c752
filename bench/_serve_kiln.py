"""Kiln's predictor serving one model from files: `uvicorn bench._serve_kiln:app --factory`.

Reads KILN_BENCH_ONNX, KILN_BENCH_SIGNATURE and KILN_BENCH_MODEL (the model name) at
start, so the bench needs no registry database.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI

from services.predict.app import create_app
from services.predict.source import (
    AliasNotFound,
    ModelNotFound,
    Ref,
    ResolvedModel,
    VersionNotFound,
)
from services.settings import PredictSettings


class FileSource:
    """Version 1 of one model, read from an ONNX file and a signature JSON file."""

    def __init__(self, name: str, onnx_path: Path, signature_path: Path) -> None:
        self.name = name
        self.onnx_path = onnx_path
        self.signature_path = signature_path

    def resolve(self, ref: Ref) -> int:
        if ref[0] != self.name:
            raise ModelNotFound(ref[0], known=[self.name])
        if ref[1] is not None:
            raise AliasNotFound(ref[0], ref[1])
        return 1

    def resolve_many(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        return {ref: 1 for ref in refs if ref == (self.name, None)}

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
