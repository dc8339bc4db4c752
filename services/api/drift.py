"""Drift: do these rows look like the rows a version was trained on?

Each feature of a window of rows is compared with the version's reference profile
(training/profile.py), with a test chosen by the window's size, as Evidently's defaults
do: up to 1,000 rows a chi-squared test that the window's counts in the profile's
histogram bins and the profile's own come from one distribution
(scipy.stats.chi2_contingency, bins merged until each expects 5 rows), drifted
when p < 0.01 / the number of features (Bonferroni: about one false alarm in a hundred
windows, however many features; at 0.05 bench/drift.py counted 5-6 in a hundred, the
chi-squared approximation running a little over its nominal rate); above 1,000 rows
the Wasserstein distance between the two histograms on the profile's bins
(scipy.stats.wasserstein_distance), in units of the feature's training standard
deviation, drifted above 0.1. The whole window has drifted when any feature has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

SMALL_WINDOW = 1000
ALPHA = 0.01
WASSERSTEIN_THRESHOLD = 0.1
MIN_EXPECTED = 5.0


def drift(profile: dict[str, Any], X: np.ndarray, *, names: Sequence[str]) -> dict[str, Any]:
    """The drift of rows ``X`` (its columns are ``names``, the profile's features in
    order) against ``profile``."""
    columns = np.asarray(X, dtype=np.float64).reshape(-1, len(names))
    n = len(columns)
    features = profile["features"]
    small = n <= SMALL_WINDOW
    per_feature = [
        _chi_squared(feature, columns[:, i], alpha=ALPHA / len(features))
        if small
        else _wasserstein(feature, columns[:, i])
        for i, feature in enumerate(features)
    ]
    drifted = [f["name"] for f in per_feature if f["drifted"]]
    return {
        "n_rows": n,
        "test": "chi_squared" if small else "wasserstein",
        "features": per_feature,
        "drifted_features": drifted,
        "share_drifted": len(drifted) / max(len(per_feature), 1),
        "drifted": bool(drifted),
    }


def _counts(feature: dict[str, Any], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference counts, window counts) in the profile's bins, the outer two open-ended."""
    edges = np.asarray(feature["histogram"]["edges"], dtype=np.float64)
    reference = np.asarray(feature["histogram"]["counts"], dtype=np.float64)
    inner = edges[1:-1]
    window = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(reference))
    return reference, window.astype(np.float64)


def _chi_squared(feature: dict[str, Any], values: np.ndarray, *, alpha: float) -> dict[str, Any]:
    # The profile's histogram is itself a sample of the training distribution: a test of
    # homogeneity of the two samples' counts (a 2 × bins table), not of the window
    # against fixed expected shares, which would ignore the profile's own noise.
    reference, window = _counts(feature, values)
    table = _merged(np.vstack([reference, window]))
    if table.shape[1] < 2:
        # One value in training (a constant column): drifted when anything else shows up.
        moved = bool(np.any(values != feature["mean"]))
        return _result(feature, "chi_squared", 0.0, 0.0 if moved else 1.0, alpha, moved)
    result = stats.chi2_contingency(table, correction=False)
    p_value = float(result.pvalue)
    return _result(feature, "chi_squared", float(result.statistic), p_value, alpha, p_value < alpha)


def _merged(table: np.ndarray) -> np.ndarray:
    """Neighbouring bins (columns) summed until each expects at least MIN_EXPECTED rows
    in both samples, the chi-squared test's rule of thumb; a short last group joins the
    one before it."""
    shares = table.sum(axis=1, keepdims=True) / table.sum()
    groups: list[np.ndarray] = []
    running = np.zeros(2)
    for column in table.T:
        running = running + column
        if (shares[:, 0] * running.sum()).min() >= MIN_EXPECTED:
            groups.append(running)
            running = np.zeros(2)
    if running.sum() > 0:
        if groups:
            groups[-1] = groups[-1] + running
        else:
            groups = [running]
    return np.array(groups).T


def _wasserstein(feature: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    reference, window = _counts(feature, values)
    edges = np.asarray(feature["histogram"]["edges"], dtype=np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    # Both on the same bins: binning alone moves neither.
    distance = stats.wasserstein_distance(centres, centres, reference, window)
    scale = feature["std"] if feature["std"] > 0 else 1.0
    normed = float(distance / scale)
    return _result(
        feature, "wasserstein", normed, None, WASSERSTEIN_THRESHOLD, normed > WASSERSTEIN_THRESHOLD
    )


def _result(
    feature: dict[str, Any],
    test: str,
    statistic: float,
    p_value: float | None,
    threshold: float,
    drifted: bool,
) -> dict[str, Any]:
    return {
        "name": feature["name"],
        "test": test,
        "statistic": statistic,
        "p_value": p_value,
        # chi_squared: the p-value below which it drifted; wasserstein: the distance above.
        "threshold": threshold,
        "drifted": drifted,
    }
