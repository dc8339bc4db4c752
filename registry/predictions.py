"""A version's held-out predictions as an artifact: which rows, their targets and the
model's outputs, in one NPZ file (numpy's own format; no pickles)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Predictions:
    rows: np.ndarray  # int64 [n]: indices of the dataset's rows (or windows)
    y: np.ndarray  # [n]: class indices or values
    output: np.ndarray  # [n, outputs]: probabilities or values


def encode(rows: np.ndarray, y: np.ndarray, output: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        rows=np.asarray(rows, dtype=np.int64),
        y=np.asarray(y),
        output=np.asarray(output, dtype=np.float32),
    )
    return buffer.getvalue()


def decode(data: bytes) -> Predictions:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        output = arrays["output"]
        return Predictions(
            rows=arrays["rows"], y=arrays["y"], output=output.reshape(len(output), -1)
        )
