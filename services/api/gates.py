"""Promotion gates: move an alias only when the candidate beats the version it points at,
on the same folds, by a paired test over the per-fold scores (docs/decisions/0028).

Folds that share most of their training rows are not independent samples, so a plain
paired t-test over them is too eager to call a difference real; the test here is
Nadeau and Bengio's corrected resampled t-test (the variance of the per-fold differences
inflated by n_val / n_train), one-sided, with scipy's t distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from registry.models import FoldMetric, ModelVersion
from services.api.alias_schemas import PromotionGate
from services.api.errors import GateMetricUnknown, GateRefused, NotComparable
from training.spec.search import LOWER_IS_BETTER

TEST = "one-sided paired t-test over the folds, corrected for their shared training rows"
# What decides which rows each fold holds: versions that agree on all of it were scored on
# the same folds (k-fold is seeded, so the same spec fields give the same split).
_FOLD_FIELDS = ("k_folds", "seed", "test_split", "window", "task")


def check(
    gate: PromotionGate, current: ModelVersion | None, candidate: ModelVersion
) -> dict[str, Any]:
    """The gate's figures when ``candidate`` passes it against ``current``; raises
    `GateRefused` (409) when it does not, `NotComparable` (409) when the two were not
    scored on the same folds, `GateMetricUnknown` (422) for a metric they lack."""
    if current is None:
        return {
            "metric": gate.metric,
            "passed": True,
            "note": "the alias pointed at no version: nothing to compare with",
        }
    _same_folds(current, candidate)
    now, new = _scores(current, gate.metric), _scores(candidate, gate.metric)
    if set(now) != set(new):
        raise NotComparable(
            f"v{candidate.version} has folds {sorted(new)} and v{current.version} has folds "
            f"{sorted(now)}: a paired test needs the same folds"
        )
    folds = sorted(new)
    higher = gate.metric not in LOWER_IS_BETTER
    better = "higher" if higher else "lower"
    sign = 1.0 if higher else -1.0
    gains = np.array([sign * (new[k] - now[k]) for k in folds])
    p_value = _p_value(gains, gate.min_delta, _test_share(candidate))
    new_mean, now_mean = float(np.mean(list(new.values()))), float(np.mean(list(now.values())))
    difference = new_mean - now_mean
    if p_value >= gate.alpha:
        raise GateRefused(
            f"gate on {gate.metric} ({better} is better): v{candidate.version} mean "
            f"{new_mean:.4f}, v{current.version} mean {now_mean:.4f}, difference "
            f"{difference:+.4f} (min_delta {gate.min_delta:g}); {TEST}: p = {p_value:.4g}, "
            f"not below alpha {gate.alpha:g}. The alias stays at v{current.version}"
        )
    return {
        "metric": gate.metric,
        "better": better,
        "candidate": {"version": candidate.version, "mean": new_mean},
        "current": {"version": current.version, "mean": now_mean},
        "difference": difference,
        "min_delta": gate.min_delta,
        "alpha": gate.alpha,
        "p_value": p_value,
        "folds": len(folds),
        "test": TEST,
        "passed": True,
    }


def _same_folds(current: ModelVersion, candidate: ModelVersion) -> None:
    for mv in (current, candidate):
        if mv.spec.get("cross_validation") is False:
            raise NotComparable(
                f"v{mv.version} was not cross-validated (its metrics are on its training rows): "
                "a gate compares per-fold scores"
            )
    differ = [
        f"{field} {candidate.spec.get(field)!r} vs {current.spec.get(field)!r}"
        for field in _FOLD_FIELDS
        if candidate.spec.get(field) != current.spec.get(field)
    ]
    if candidate.dataset.sha256 != current.dataset.sha256:
        differ.insert(0, "the dataset (its sha256)")
    if differ:
        raise NotComparable(
            f"v{candidate.version} and v{current.version} were not evaluated on the same folds: "
            f"they differ in {', '.join(differ)}. Retrain the candidate on the current "
            "version's dataset and fold settings to compare them"
        )


def _scores(mv: ModelVersion, metric: str) -> dict[int, float]:
    scores = {f.fold: f.metrics.get(metric) for f in mv.folds}
    if not scores or any(not isinstance(v, int | float) for v in scores.values()):
        known = sorted(
            {k for f in mv.folds for k, v in f.metrics.items() if isinstance(v, int | float)}
        )
        raise GateMetricUnknown(
            f"v{mv.version}'s folds have no score {metric!r}; expected one of {known}"
        )
    return {k: float(v) for k, v in scores.items() if v is not None}


def _test_share(mv: ModelVersion) -> float:
    folds: Sequence[FoldMetric] = mv.folds
    return float(np.mean([f.n_val / max(f.n_train, 1) for f in folds]))


def _p_value(gains: np.ndarray, min_delta: float, test_share: float) -> float:
    """P(mean gain <= min_delta) by the corrected resampled t-test, one-sided."""
    k = len(gains)
    excess = float(np.mean(gains)) - min_delta
    variance = float(np.var(gains, ddof=1)) if k > 1 else 0.0
    if variance == 0.0:
        # Every fold moved by the same amount: certain, one way or the other.
        return 0.0 if excess > 0 else 1.0
    t = excess / math.sqrt((1 / k + test_share) * variance)
    return float(stats.t.sf(t, df=k - 1))
