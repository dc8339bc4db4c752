"""training/profile.py: a version's reference profile is numpy's summary of its training
rows, per feature, with the class balance or the target's summary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.profile import HISTOGRAM_BINS, QUANTILES, reference_profile

RNG = np.random.default_rng(2)


def test_a_tables_profile_summarises_each_column_and_the_class_balance() -> None:
    X = np.column_stack([RNG.normal(5, 2, 400), RNG.uniform(0, 1, 400)]).astype(np.float32)
    y = (RNG.uniform(size=400) < 0.3).astype(np.int64)

    profile = reference_profile(
        X, y, feature_names=["a", "b"], class_labels=["no", "yes"], kind="table"
    )

    assert profile["n_rows"] == 400
    assert [f["name"] for f in profile["features"]] == ["a", "b"]
    for i, feature in enumerate(profile["features"]):
        column = X[:, i].astype(np.float64)
        assert feature["count"] == 400
        assert feature["mean"] == pytest.approx(column.mean())
        assert feature["std"] == pytest.approx(column.std())
        assert (feature["min"], feature["max"]) == (column.min(), column.max())
        assert list(feature["quantiles"].values()) == pytest.approx(np.quantile(column, QUANTILES))
        assert feature["quantiles"]["0.5"] == pytest.approx(np.median(column))
        counts, edges = np.histogram(column, bins=HISTOGRAM_BINS)
        assert feature["histogram"] == {"edges": pytest.approx(edges), "counts": counts.tolist()}
    shares = {c["label"]: (c["count"], c["share"]) for c in profile["classes"]}
    assert shares == {
        "no": (int((y == 0).sum()), pytest.approx((y == 0).mean())),
        "yes": (int((y == 1).sum()), pytest.approx((y == 1).mean())),
    }
    assert profile["target"] is None
    json.dumps(profile, allow_nan=False)


def test_images_are_profiled_per_channel_and_a_regression_by_its_target() -> None:
    X = RNG.uniform(size=(50, 8, 8, 3))
    X[..., 2] += 10
    y = RNG.normal(100, 15, 50)

    profile = reference_profile(X, y, feature_names=None, class_labels=None, kind="image")

    assert [f["name"] for f in profile["features"]] == ["channel 0", "channel 1", "channel 2"]
    assert [f["count"] for f in profile["features"]] == [50 * 64] * 3
    assert profile["features"][2]["mean"] == pytest.approx(X[..., 2].mean())
    assert profile["classes"] is None
    assert profile["target"]["mean"] == pytest.approx(y.mean())
