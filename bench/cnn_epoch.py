"""Seconds per training epoch of the example digits CNN, through Kiln's builder.

    .venv/bin/python bench/cnn_epoch.py              # smoke: 3 timed epochs
    .venv/bin/python bench/cnn_epoch.py --epochs 10  # the number to report (quiet machine)

Builds examples/digits-cnn.json with training.builder on scikit-learn's 1797 digits as
8×8×1 images, batch 32, and prints the mean and the minimum wall time of an epoch after a
warm-up epoch (which pays for tracing), beside a plain Keras model of the same layers
built by hand (the baseline: what Kiln's in-model standardiser and builder add), and
the same spec through ``training.cv.fit_full``, the refit a worker runs (steps_per_execution,
the progress/cancel callback), timed between its epoch reports.
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def epoch_times(model: Any, X: np.ndarray, y: np.ndarray, epochs: int, keras: Any) -> list[float]:
    times: list[float] = []

    class Clock(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:  # noqa: ARG002
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:  # noqa: ARG002
            times.append(time.perf_counter() - self.start)

    model.fit(X, y, epochs=epochs + 1, batch_size=32, verbose=0, callbacks=[Clock()])
    return times[1:]  # the first epoch traces the graph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sklearn.datasets import load_digits

    from training.builder import build_model, import_keras, standardiser_stats
    from training.spec import ModelSpec

    keras = import_keras()
    digits = load_digits()
    X = digits.images.astype(np.float32)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    spec = ModelSpec.model_validate(json.loads((ROOT / "examples/digits-cnn.json").read_text()))

    keras.utils.set_random_seed(0)
    mean, std = standardiser_stats(X)
    kiln = build_model(spec, input_shape=X.shape[1:], mean=mean, std=std)
    kiln_times = epoch_times(kiln, X, y, args.epochs, keras)

    keras.utils.set_random_seed(0)
    L = keras.layers
    plain = keras.Sequential(
        [
            keras.Input(X.shape[1:]),
            L.Rescaling(1.0 / 16.0),
            L.Conv2D(16, 3, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Conv2D(32, 3, activation="relu"),
            L.Flatten(),
            L.Dropout(0.25),
            L.Dense(10, activation="softmax"),
        ]
    )
    plain.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    plain_times = epoch_times(plain, X, y, args.epochs, keras)

    from training.cv import fit_full
    from training.fit import FitPlan
    from training.hooks import Hooks

    marks: list[float] = []
    timed = spec.model_copy(update={"epochs": args.epochs + 1, "batch_size": 32})
    fit_full(FitPlan(timed, Hooks(on_epoch=lambda *_: marks.append(time.perf_counter()))), X, y)
    fit_times = list(np.diff(marks))  # from the warm-up epoch's end on

    n = len(X)
    print(f"digits CNN, {n} images 8x8x1, batch 32, {args.epochs} timed epochs (after 1 warm-up)")
    rows = (
        ("kiln builder", kiln_times),
        ("kiln fit_full", fit_times),
        ("plain keras", plain_times),
    )
    for name, t in rows:
        print(
            f"  {name:13s} mean {np.mean(t):.3f} s/epoch  min {np.min(t):.3f} s  ({n / np.mean(t):.0f} images/s)"
        )
    print(f"  ratio kiln builder/plain (mean): {np.mean(kiln_times) / np.mean(plain_times):.2f}")
    print(f"  ratio kiln fit_full/plain (mean): {np.mean(fit_times) / np.mean(plain_times):.2f}")


if __name__ == "__main__":
    main()
