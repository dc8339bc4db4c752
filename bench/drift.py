"""Drift detection: how often a shifted feature is flagged, and how often nothing is.

    .venv/bin/python bench/drift.py [--runs 100] [--rows 500] [--features 5]

A reference table of 5,000 rows (features of several shapes: normal, log-normal,
uniform, a mixture, a skewed integer count) is profiled as a worker profiles a version's
training rows (training.profile). Then, --runs times each: a fresh window of --rows rows
from the same distributions (a false alarm if anything is flagged), and one with the
first feature shifted by one training standard deviation (detected if that feature is
flagged). Kiln's test (services/api/drift.py, on the profile alone) is printed beside the
baseline a user with the raw training rows would run: scipy's two-sample KS test per
feature, Bonferroni-corrected at the same level. Also at 5,000 rows a window, where Kiln switches to the
Wasserstein distance. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.api.drift import ALPHA, drift  # noqa: E402
from training.profile import reference_profile  # noqa: E402


def sample(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    makers = [
        lambda: rng.normal(10, 3, n),
        lambda: rng.lognormal(0, 0.6, n),
        lambda: rng.uniform(-1, 1, n),
        lambda: np.where(rng.uniform(size=n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(2, 1, n)),
        lambda: rng.poisson(3, n).astype(np.float64),
    ]
    return np.column_stack([makers[i % len(makers)]() for i in range(k)])


def baseline(train: np.ndarray, window: np.ndarray) -> list[int]:
    alpha = ALPHA / train.shape[1]
    return [
        i for i in range(train.shape[1]) if stats.ks_2samp(train[:, i], window[:, i]).pvalue < alpha
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--features", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train = sample(rng, 5000, args.features)
    names = [f"f{i}" for i in range(args.features)]
    profile = reference_profile(
        train, np.zeros(len(train)), feature_names=names, class_labels=None, kind="table"
    )
    std = train[:, 0].std()
    print(  # noqa: T201
        f"{args.features} features, 5000 training rows; {args.runs} windows each; feature f0 "
        "shifted by one training std in the shifted windows"
    )
    print("window rows | test              | detected (shifted) | false alarms (unshifted)")  # noqa: T201
    for rows in (args.rows, 5000):
        found = {"kiln": 0, "ks": 0}
        alarms = {"kiln": 0, "ks": 0}
        test = ""
        for _ in range(args.runs):
            same = sample(rng, rows, args.features)
            shifted = sample(rng, rows, args.features)
            shifted[:, 0] += std
            ours_same, ours_shift = (
                drift(profile, same, names=names),
                drift(profile, shifted, names=names),
            )
            test = ours_same["test"]
            alarms["kiln"] += ours_same["drifted"]
            found["kiln"] += "f0" in ours_shift["drifted_features"]
            alarms["ks"] += bool(baseline(train, same))
            found["ks"] += 0 in baseline(train, shifted)
        for side, label in (("kiln", f"kiln: {test}"), ("ks", "raw-row KS")):
            print(  # noqa: T201
                f"{rows:>11} | {label:<17} | {found[side]:>12} of {args.runs} | "
                f"{alarms[side]:>11} of {args.runs}"
            )
    print("goal at 500 rows: detected >= 95 of 100, false alarms <= 5 of 100")  # noqa: T201


if __name__ == "__main__":
    main()
