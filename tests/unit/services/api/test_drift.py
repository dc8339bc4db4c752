"""services/api/drift.py: the test changes with the window's size, and a shifted feature
is the one named (bench/drift.py counts detections and false alarms)."""

from __future__ import annotations

import numpy as np

from services.api.drift import SMALL_WINDOW, WASSERSTEIN_THRESHOLD, drift
from training.profile import reference_profile

RNG = np.random.default_rng(4)
NAMES = ["x", "constant"]
TRAIN = np.column_stack([RNG.normal(0, 1, 4000), np.full(4000, 3.0)])
PROFILE = reference_profile(
    TRAIN, np.zeros(4000), feature_names=NAMES, class_labels=None, kind="table"
)


def _window(n: int, shift: float = 0.0) -> np.ndarray:
    return np.column_stack([RNG.normal(shift, 1, n), np.full(n, 3.0)])


def test_large_windows_are_compared_by_wasserstein_distance_in_training_stds() -> None:
    same, moved = (
        drift(PROFILE, _window(5000), names=NAMES),
        drift(PROFILE, _window(5000, 0.5), names=NAMES),
    )

    assert same["test"] == moved["test"] == "wasserstein"
    assert same["drifted"] is False
    assert moved["drifted_features"] == ["x"]
    distance = moved["features"][0]["statistic"]
    assert distance > WASSERSTEIN_THRESHOLD
    assert abs(distance - 0.5) < 0.1  # half a standard deviation, in those units


def test_small_windows_are_tested_and_a_constant_column_drifts_once_it_varies() -> None:
    window = _window(SMALL_WINDOW)
    assert drift(PROFILE, window, names=NAMES)["test"] == "chi_squared"
    window[0, 1] = 4.0

    found = drift(PROFILE, window, names=NAMES)

    assert found["drifted_features"] == ["constant"]
