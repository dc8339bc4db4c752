"""workers/progress.py: where a running job is, and the curves not stored elsewhere yet."""

from __future__ import annotations

from workers.progress import Progress


def test_progress_snapshot_drops_stored_folds_and_rounds_to_float32_precision() -> None:
    progress = Progress(n_folds=2, epochs=3)
    assert progress.snapshot() is None
    progress.on_epoch("cv", 1, 1, {"loss": 0.123456789})
    progress.on_epoch("cv", 2, 1, {"loss": 0.5})
    progress.on_epoch("cv", 1, 2, {"loss": 0.1})

    snap = progress.snapshot()
    assert snap is not None
    assert snap["history"] == {"1": {"loss": [0.1234568, 0.1]}, "2": {"loss": [0.5]}}
    assert (snap["fold"], snap["epoch"], snap["n_folds"]) == (1, 2, 2)
    progress.fold_stored(1)
    progress.on_epoch("refit", None, 1, {"loss": 0.2})
    after = progress.snapshot()
    assert after is not None
    assert set(after["history"]) == {"2", "refit"}
    assert progress.refit_history() == {"loss": [0.2]}
