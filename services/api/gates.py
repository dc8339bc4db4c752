"""Promotion gates: move an alias only when the candidate beats the version it points at,
on the same folds by a paired test over the per-fold scores, or else on the same held-out
test rows by a paired bootstrap over those rows (docs/decisions/0028 and 0032).

Folds that share most of their training rows are not independent samples, so a plain
paired t-test over them is too eager to call a difference real; the test here is
Nadeau and Bengio's corrected resampled t-test (the variance of the per-fold differences
inflated by n_val / n_train), one-sided, with scipy's t distribution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from core.vocabulary import BINARY_THRESHOLD
from registry import predictions
from registry.artifacts import ArtifactStore
from registry.models import FoldMetric, ModelVersion
from registry.predictions import Predictions
from services.api.alias_schemas import PromotionGate
from services.api.errors import GateMetricUnknown, GateRefused, NotComparable
from training.spec.search import LOWER_IS_BETTER

TEST = "one-sided paired t-test over the folds, corrected for their shared training rows"
ROWS_TEST = "one-sided paired bootstrap over the same held-out rows (2000 resamples)"
ROW_RESAMPLES = 2000
# 2,000 resamples of 20,000 rows: about a second on one core.
MAX_RESAMPLED_ROWS = 20_000
# What decides which rows each fold holds: versions that agree on all of it were scored on
# the same folds (k-fold is seeded, so the same spec fields give the same split).
_FOLD_FIELDS = ("k_folds", "seed", "test_split", "window", "task")


def check(
    gate: PromotionGate,
    current: ModelVersion | None,
    candidate: ModelVersion,
    *,
    store: ArtifactStore,
) -> dict[str, Any]:
    """The gate's figures when ``candidate`` passes it against ``current``; raises
    `GateRefused` (409) when it does not, `NotComparable` (409) when the two were scored
    neither on the same folds nor on the same held-out rows, `GateMetricUnknown` (422)
    for a metric they lack."""
    if current is None:
        return {
            "metric": gate.metric,
            "passed": True,
            "note": "the alias pointed at no version: nothing to compare with",
        }
    folds_differ = _folds_differ(current, candidate)
    if folds_differ is None:
        return _on_folds(gate, current, candidate)
    rows = _same_rows(current, candidate, store)
    if isinstance(rows, str):
        raise NotComparable(
            f"v{candidate.version} and v{current.version} were evaluated neither on the same "
            f"folds ({folds_differ}) nor on the same held-out rows ({rows}). Retrain the "
            "candidate on the current version's dataset and fold settings to compare them"
        )
    return _on_rows(gate, current, candidate, *rows)


def _on_folds(
    gate: PromotionGate, current: ModelVersion, candidate: ModelVersion
) -> dict[str, Any]:
    now, new = _scores(current, gate.metric), _scores(candidate, gate.metric)
    if set(now) != set(new):
        raise NotComparable(
            f"v{candidate.version} has folds {sorted(new)} and v{current.version} has folds "
            f"{sorted(now)}: a paired test needs the same folds"
        )
    folds = sorted(new)
    sign = -1.0 if gate.metric in LOWER_IS_BETTER else 1.0
    gains = np.array([sign * (new[k] - now[k]) for k in folds])
    p_value = _p_value(gains, gate.min_delta, _test_share(candidate))
    new_mean, now_mean = float(np.mean(list(new.values()))), float(np.mean(list(now.values())))
    return _verdict(
        gate, current, candidate, (new_mean, now_mean), p_value, test=TEST, folds=len(folds)
    )


def _verdict(
    gate: PromotionGate,
    current: ModelVersion,
    candidate: ModelVersion,
    means: tuple[float, float],
    p_value: float,
    **evidence: Any,
) -> dict[str, Any]:
    """The passed gate's figures, or GateRefused naming them."""
    new_mean, now_mean = means
    better = "lower" if gate.metric in LOWER_IS_BETTER else "higher"
    difference = new_mean - now_mean
    figures = {
        "metric": gate.metric,
        "better": better,
        "candidate": {"version": candidate.version, "mean": new_mean},
        "current": {"version": current.version, "mean": now_mean},
        "difference": difference,
        "min_delta": gate.min_delta,
        "alpha": gate.alpha,
        "p_value": p_value,
        **evidence,
        "passed": p_value < gate.alpha,
    }
    if not figures["passed"]:
        raise GateRefused(
            f"gate on {gate.metric} ({better} is better): v{candidate.version} mean "
            f"{new_mean:.4f}, v{current.version} mean {now_mean:.4f}, difference "
            f"{difference:+.4f} (min_delta {gate.min_delta:g}); {evidence['test']}: "
            f"p = {p_value:.4g}, not below alpha {gate.alpha:g}. The alias stays at "
            f"v{current.version}",
            figures=figures,
        )
    return figures


def _folds_differ(current: ModelVersion, candidate: ModelVersion) -> str | None:
    """Why the two were not scored on the same folds; None when they were."""
    for mv in (current, candidate):
        if mv.spec.get("cross_validation") is False:
            return f"v{mv.version} was not cross-validated"
    differ = [
        f"{field} {candidate.spec.get(field)!r} vs {current.spec.get(field)!r}"
        for field in _FOLD_FIELDS
        if candidate.spec.get(field) != current.spec.get(field)
    ]
    if candidate.dataset.sha256 != current.dataset.sha256:
        differ.insert(0, "the dataset (its sha256)")
    return f"they differ in {', '.join(differ)}" if differ else None


def _same_rows(
    current: ModelVersion, candidate: ModelVersion, store: ArtifactStore
) -> tuple[Predictions, Predictions] | str:
    """Both versions' outputs on the same held-out rows, or why there are none."""
    for mv in (current, candidate):
        if mv.predictions_sha256 is None:
            return f"v{mv.version} held no test rows out (its spec has no test_split)"
    if candidate.dataset.sha256 != current.dataset.sha256:
        return "the dataset differs"
    if candidate.spec.get("task") != current.spec.get("task"):
        return "the task differs"
    now = predictions.decode(store.get(current.predictions_sha256 or ""))
    new = predictions.decode(store.get(candidate.predictions_sha256 or ""))
    if not np.array_equal(now.rows, new.rows):
        return (
            f"they held out other rows (test_split {candidate.spec.get('test_split')!r} vs "
            f"{current.spec.get('test_split')!r}, seed {candidate.spec.get('seed')!r} vs "
            f"{current.spec.get('seed')!r})"
        )
    return now, new


def _on_rows(
    gate: PromotionGate,
    current: ModelVersion,
    candidate: ModelVersion,
    now: Predictions,
    new: Predictions,
) -> dict[str, Any]:
    metric = _row_metric(gate.metric, str(candidate.spec.get("task")), now.y)
    sign = -1.0 if gate.metric in LOWER_IS_BETTER else 1.0
    every = np.arange(len(now.y))[None]
    new_mean, now_mean = float(metric(new, every)[0]), float(metric(now, every)[0])

    def gain(rows: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = np.atleast_2d(np.moveaxis(rows, axis, -1))
        return np.asarray(sign * (metric(new, rows) - metric(now, rows)))

    # Paired: each resample draws the same rows for both versions. Seeded, so a gate asked
    # twice gives the same answer. A resample costs a pass over its rows, and the gate
    # holds the model's lock: past MAX_RESAMPLED_ROWS rows, a seeded sample of them is
    # resampled (the means above are still over every row).
    rng = np.random.default_rng(0)
    pool = np.arange(len(now.y))
    if len(pool) > MAX_RESAMPLED_ROWS:
        pool = np.sort(rng.choice(pool, MAX_RESAMPLED_ROWS, replace=False))
    result = stats.bootstrap(
        (pool,),
        gain,
        n_resamples=ROW_RESAMPLES,
        vectorized=True,
        batch=max(1, 2_000_000 // len(pool)),
        method="percentile",
        rng=rng,
    )
    gains = np.asarray(result.bootstrap_distribution)
    p_value = float((1 + np.sum(gains <= gate.min_delta)) / (len(gains) + 1))
    return _verdict(
        gate,
        current,
        candidate,
        (new_mean, now_mean),
        p_value,
        test=ROWS_TEST,
        rows=len(now.y),
        resampled_rows=len(pool),
    )


RowMetric = Callable[[Predictions, np.ndarray], np.ndarray]


def _row_metric(name: str, task: str, y: np.ndarray) -> RowMetric:
    """``name`` over each row of indices [resamples, n], for a version's predictions: the
    same figure training.metrics computes on those rows."""
    if task == "regression":
        regression = _REGRESSION.get(name)
        if regression is None:
            raise GateMetricUnknown(
                f"a gate on held-out rows has no {name!r} for a regression; expected one of "
                f"{sorted(_REGRESSION)}"
            )
        return regression
    classes = np.unique(y)
    binary = task == "binary"
    if name in _PER_ROW:
        return lambda p, rows: _PER_ROW[name](p, binary)[rows].mean(axis=-1)
    if name not in _COUNTED:
        raise GateMetricUnknown(
            f"a gate on held-out rows has no {name!r}; expected one of "
            f"{sorted([*_PER_ROW, *_COUNTED])}"
        )

    # Binary precision, recall, f1, specificity and npv are class 1's; the rest (and
    # every multiclass one) average over the classes present, as training.metrics does.
    one_class = binary and name not in ("f1_macro", "f1_weighted")

    def counted(p: Predictions, rows: np.ndarray) -> np.ndarray:
        labels = _labels(p, binary)
        present = [1] if one_class else np.union1d(classes, np.unique(labels)).tolist()
        truth, said = p.y.astype(np.int64)[rows], labels[rows]
        per_class, support = [], []
        for c in present:
            tp = np.sum((truth == c) & (said == c), axis=-1)
            fp = np.sum((truth != c) & (said == c), axis=-1)
            fn = np.sum((truth == c) & (said != c), axis=-1)
            tn = truth.shape[-1] - tp - fp - fn
            per_class.append(_COUNTED[name](_Counts(tp, fp, fn, tn)))
            support.append(tp + fn)
        scores, weights = np.stack(per_class), np.stack(support)
        if name == "f1_weighted":
            return _ratio((scores * weights).sum(axis=0), weights.sum(axis=0))
        return np.asarray(scores.mean(axis=0))

    return counted


class _Counts(NamedTuple):
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray


def _labels(p: Predictions, binary: bool) -> np.ndarray:
    if binary:
        return (p.output[:, -1] >= BINARY_THRESHOLD).astype(np.int64)
    return np.asarray(p.output.argmax(axis=1), dtype=np.int64)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    # zero_division=0, as scikit-learn's metrics are asked for in training.metrics.
    return np.asarray(np.where(bottom > 0, top / np.maximum(bottom, 1), 0.0))


def _f1(c: _Counts) -> np.ndarray:
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


_COUNTED: dict[str, Callable[[_Counts], np.ndarray]] = {
    "precision": lambda c: _ratio(c.tp, c.tp + c.fp),
    "recall": lambda c: _ratio(c.tp, c.tp + c.fn),
    "specificity": lambda c: _ratio(c.tn, c.tn + c.fp),
    "npv": lambda c: _ratio(c.tn, c.tn + c.fn),
    "f1": _f1,
    "f1_macro": _f1,
    "f1_weighted": _f1,
}


def _correct(p: Predictions, binary: bool) -> np.ndarray:
    return np.asarray(_labels(p, binary) == p.y.astype(np.int64), dtype=np.float64)


def _row_log_loss(p: Predictions, binary: bool) -> np.ndarray:
    y = p.y.astype(np.int64)
    proba = p.output.astype(np.float64)
    if binary:
        p1 = proba[:, -1]
        truth = np.where(y == 1, p1, 1.0 - p1)
    else:
        truth = (proba / proba.sum(axis=1, keepdims=True))[np.arange(len(y)), y]
    eps = np.finfo(np.float64).eps
    return np.asarray(-np.log(np.clip(truth, eps, 1 - eps)))


_PER_ROW: dict[str, Callable[[Predictions, bool], np.ndarray]] = {
    "accuracy": _correct,
    "error_rate": lambda p, binary: 1.0 - _correct(p, binary),
    "log_loss": _row_log_loss,
}


def _errors(p: Predictions) -> np.ndarray:
    return np.asarray(p.y, dtype=np.float64) - p.output[:, 0].astype(np.float64)


def _r2(p: Predictions, rows: np.ndarray) -> np.ndarray:
    y = np.asarray(p.y, dtype=np.float64)[rows]
    residual = np.sum(_errors(p)[rows] ** 2, axis=-1)
    total = np.sum((y - y.mean(axis=-1, keepdims=True)) ** 2, axis=-1)
    return np.where(total > 0, 1.0 - residual / np.maximum(total, 1e-300), 0.0)


_REGRESSION: dict[str, RowMetric] = {
    "mae": lambda p, rows: np.abs(_errors(p))[rows].mean(axis=-1),
    "mse": lambda p, rows: (_errors(p) ** 2)[rows].mean(axis=-1),
    "rmse": lambda p, rows: np.sqrt((_errors(p) ** 2)[rows].mean(axis=-1)),
    "r2": _r2,
}


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
