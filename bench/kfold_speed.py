"""K-fold speed: Kiln's training code against a plain Keras loop, on the course MLP.

    .venv/bin/python bench/kfold_speed.py                 # full size: 1000 epochs (many minutes)
    .venv/bin/python bench/kfold_speed.py --epochs 20     # smoke run
    .venv/bin/python bench/kfold_speed.py --processes 1   # Kiln with folds one after another

5-fold cross-validation (--folds) of the 8-12-8-1 MLP with Dropout (Dense 12 relu,
Dropout 0.2, Dense 8 relu, Dense 1 sigmoid), Adam, batch 16, --epochs epochs, on a 768×8
binary table made by scikit-learn's make_classification with a fixed seed (a Pima-sized
stand-in; nothing is downloaded). Both sides use the same StratifiedKFold folds and
standardise with their training rows' statistics.

- kiln, folds together: ``training.cv.run_kfold`` as a worker runs it: the k folds as one
  graph with a fold axis (training/stacked.py), per-epoch validation curves included;
- kiln, fold by fold: the same with ``together=False``, the path a spec that cannot
  stack takes (folds in --processes processes when they are long enough, else one after
  another);
- plain: the loop course notebooks write: for each fold build, compile, fit(verbose=0),
  predict, f1_score; one process.

Each side runs in its own fresh Python process; its time starts after Keras is imported
and ends when the last fold is scored. Prints the wall times, each Kiln path's ratio to
the plain loop (goal for folds together: ≤ 0.12) and the mean F1 of each (goal: |ΔF1| ≤
0.02). Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
DROPOUT = 0.2


def table() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=768,
        n_features=8,
        n_informative=5,
        n_redundant=2,
        weights=[0.65, 0.35],
        flip_y=0.05,
        class_sep=0.8,
        random_state=42,
    )
    return X.astype(np.float32), y.astype(np.int64)


def plain(epochs: int, folds: int) -> dict[str, Any]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    X, y = table()
    started = time.perf_counter()
    f1s = []
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED).split(X, y):
        keras.utils.set_random_seed(SEED)
        scaler = StandardScaler().fit(X[train])
        model = keras.Sequential(
            [
                keras.Input((8,)),
                keras.layers.Dense(12, activation="relu"),
                keras.layers.Dropout(DROPOUT),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        model.fit(scaler.transform(X[train]), y[train], epochs=epochs, batch_size=16, verbose=0)
        pred = (model.predict(scaler.transform(X[test]), verbose=0) > 0.5).astype(int)
        f1s.append(float(f1_score(y[test], pred.ravel())))
    return {"seconds": time.perf_counter() - started, "f1": f1s}


def kiln(epochs: int, folds: int, processes: int, together: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from training.builder import import_keras
    from training.cv import fold_process_count, run_kfold
    from training.fit import FitPlan
    from training.spec import ModelSpec

    import_keras()
    spec = ModelSpec.model_validate(
        {
            "task": "binary",
            "layers": [
                {"type": "Dense", "units": 12, "activation": "relu"},
                {"type": "Dropout", "rate": DROPOUT},
                {"type": "Dense", "units": 8, "activation": "relu"},
                {"type": "Dense", "units": 1, "activation": "sigmoid"},
            ],
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "loss": "binary_crossentropy",
            "epochs": epochs,
            "batch_size": 16,
            "k_folds": folds,
            "seed": SEED,
        }
    )
    X, y = table()
    started = time.perf_counter()
    results = run_kfold(FitPlan(spec), X, y, processes=processes, together=together)
    return {
        "seconds": time.perf_counter() - started,
        "f1": [float(r.metrics["f1"]) for r in results],  # type: ignore[arg-type]
        "processes": 1 if together else fold_process_count(len(y), spec=spec, processes=processes),
    }


def run_side(side: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--epochs",
        str(args.epochs),
        "--folds",
        str(args.folds),
        "--processes",
        str(args.processes),
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--side", choices=["plain", "kiln", "kiln-apart"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "plain":
        print(json.dumps(plain(args.epochs, args.folds)))  # noqa: T201
        return
    if args.side in ("kiln", "kiln-apart"):
        together = args.side == "kiln"
        print(json.dumps(kiln(args.epochs, args.folds, args.processes, together)))  # noqa: T201
        return

    print(  # noqa: T201
        f"{args.folds}-fold CV, 8-12-8-1 MLP with Dropout, Adam, batch 16, {args.epochs} "
        f"epochs, 768x8 binary table; {os.cpu_count()} cores"
    )
    base = run_side("plain", args)
    f1_plain = float(np.mean(base["f1"]))
    print(f"plain Keras loop     : {base['seconds']:8.1f} s   mean F1 {f1_plain:.4f}")  # noqa: T201
    for side, what in (("kiln-apart", "fold by fold"), ("kiln", "folds together")):
        ours = run_side(side, args)
        ratio = ours["seconds"] / base["seconds"]
        f1 = float(np.mean(ours["f1"]))
        print(  # noqa: T201
            f"kiln, {what:14} : {ours['seconds']:8.1f} s   mean F1 {f1:.4f}   "
            f"ratio {ratio:.2f}   |delta F1| {abs(f1 - f1_plain):.4f}   "
            f"({ours['processes']} process{'es' if ours['processes'] > 1 else ''})"
        )
    print("goals: ratio <= 0.12 (folds together), |delta F1| <= 0.02")  # noqa: T201


if __name__ == "__main__":
    main()
