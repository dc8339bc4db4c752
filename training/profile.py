"""A version's reference profile: what the rows it was trained on looked like.

Per feature (a table's column, an image's channel, a sequence's per-step feature): its
count, mean, standard deviation, range, quantiles and a histogram; the target's too for
a regression, its class balance for a classification. Served data is later compared
with it (drift). Shapes serialise to JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

QUANTILES = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]
HISTOGRAM_BINS = 20


def reference_profile(
    X: np.ndarray,
    y: np.ndarray,
    *,
    feature_names: Sequence[str] | None,
    class_labels: Sequence[Any] | None,
    kind: str,
) -> dict[str, Any]:
    """The profile of training rows ``X`` (the feature axis last) and their targets ``y``
    (class indices into ``class_labels``, or values for a regression)."""
    values = np.asarray(X, dtype=np.float64)
    columns = values.reshape(-1, values.shape[-1])
    names = list(feature_names) if feature_names is not None else None
    unnamed = "channel" if kind == "image" else "feature"
    features = [
        {"name": names[i] if names else f"{unnamed} {i}", **summary(columns[:, i])}
        for i in range(columns.shape[1])
    ]
    profile: dict[str, Any] = {"kind": kind, "n_rows": int(values.shape[0]), "features": features}
    if class_labels is None:
        profile["target"] = summary(np.asarray(y, dtype=np.float64))
        profile["classes"] = None
    else:
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(class_labels))
        total = max(int(counts.sum()), 1)
        profile["target"] = None
        profile["classes"] = [
            {"label": str(label), "count": int(n), "share": float(n / total)}
            for label, n in zip(class_labels, counts, strict=True)
        ]
    return profile


def summary(values: np.ndarray) -> dict[str, Any]:
    """Count, mean, population std, range, quantiles and histogram of one feature."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    return {
        "count": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "quantiles": {
            f"{q:g}": float(v)
            for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        },
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
