"""Folds in spawned processes: the same results as one after another, progress relayed
to this process, cancellation reaching every fold, and a dead fold process failing the
run without leaving processes behind."""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer

from tests.factories import mlp, model_spec
from training import cv
from training.cv import run_kfold
from training.errors import Cancelled, FoldProcessDied
from training.fit import FitPlan
from training.hooks import FoldResult, Hooks
from training.spec import ModelSpec


def _spec(**overrides: Any) -> ModelSpec:
    return model_spec(mlp(12, 0.2, epochs=6, batch_size=32, k_folds=3, seed=11), **overrides)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture
def always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests use small fits; the size rule would otherwise keep them in this process.
    monkeypatch.setattr(cv, "MIN_STEPS_FOR_PROCESSES", 0)


def test_parallel_folds_equal_sequential_ones_and_report_progress(
    data: tuple[np.ndarray, np.ndarray], always_parallel: None
) -> None:
    X, y = data
    spec = _spec()
    sequential = run_kfold(FitPlan(spec), X, y, processes=1, together=False)
    epochs: list[tuple[Any, ...]] = []
    folds: list[FoldResult] = []
    parent = os.getpid()

    hooks = Hooks(on_epoch=lambda *args: epochs.append((os.getpid(), *args)), on_fold=folds.append)
    parallel = run_kfold(FitPlan(spec, hooks), X, y, processes=2, together=False)

    assert [f.fold for f in parallel] == [1, 2, 3]
    for seq, par in zip(sequential, parallel, strict=True):
        assert (par.n_train, par.n_val) == (seq.n_train, seq.n_val)
        assert par.metrics["confusion_matrix"] == seq.metrics["confusion_matrix"]
        for name in ("accuracy", "f1", "roc_auc", "log_loss"):
            assert par.metrics[name] == pytest.approx(seq.metrics[name], abs=1e-4), name
        for name, values in seq.history.items():
            assert par.history[name] == pytest.approx(values, rel=1e-4, abs=1e-5), name
    # Every epoch of every fold reached the callbacks, in this process.
    assert {(fold, epoch) for _, _, fold, epoch, _ in epochs} == {
        (f, e) for f in (1, 2, 3) for e in range(1, 7)
    }
    assert {pid for pid, *_ in epochs} == {parent}
    assert sorted(f.fold for f in folds) == [1, 2, 3]
    assert multiprocessing.active_children() == []


def test_cancel_reaches_every_fold_process(
    data: tuple[np.ndarray, np.ndarray], always_parallel: None
) -> None:
    X, y = data
    seen: list[int] = []

    hooks = Hooks(
        on_epoch=lambda _p, fold, _e, _l: seen.append(fold), should_stop=lambda: len(seen) >= 4
    )
    with pytest.raises(Cancelled, match="cancelled during fold"):
        run_kfold(FitPlan(_spec(epochs=2000, k_folds=2), hooks), X, y, processes=2, together=False)

    assert len(seen) < 100
    assert multiprocessing.active_children() == []


def test_a_killed_fold_process_fails_the_run_and_leaves_nothing(
    data: tuple[np.ndarray, np.ndarray], always_parallel: None
) -> None:
    X, y = data
    killed: list[int] = []

    def kill_one(*_: Any) -> None:
        if not killed:
            victim = multiprocessing.active_children()[0]
            killed.append(victim.pid or 0)
            os.kill(victim.pid or 0, signal.SIGKILL)

    with pytest.raises(FoldProcessDied, match="ended without a result"):
        run_kfold(
            FitPlan(_spec(epochs=2000, k_folds=2), Hooks(on_epoch=kill_one)),
            X,
            y,
            processes=2,
            together=False,
        )

    assert killed
    assert multiprocessing.active_children() == []


_ORPHAN_SCRIPT = """
import numpy as np
from sklearn.datasets import load_breast_cancer
from training import cv
from training.fit import FitPlan
from training.hooks import Hooks
from training.spec import ModelSpec
cv.MIN_STEPS_FOR_PROCESSES = 0
X, y = load_breast_cancer(return_X_y=True)
spec = ModelSpec.model_validate({"task": "binary", "loss": "binary_crossentropy",
    "layers": [{"type": "Dense", "units": 1, "activation": "sigmoid"}],
    "epochs": 5000, "batch_size": 8, "k_folds": 2})
hooks = Hooks(on_epoch=lambda *a: print("epoch", flush=True))
cv.run_kfold(FitPlan(spec, hooks), X, y, processes=2, together=False)
"""


def test_fold_processes_end_when_their_parent_is_killed() -> None:
    import subprocess
    import sys
    import time

    from tests.e2e.conftest import children_of, cmdline

    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT],
        stdout=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().startswith(b"epoch"), "the folds never started"
        folds = [p for p in children_of(parent.pid) if "spawn_main" in cmdline(p)]
        assert len(folds) == 2
        parent.kill()  # SIGKILL: nothing in the parent can clean up
        parent.wait()
        deadline = time.monotonic() + 15
        alive = folds
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = [p for p in folds if cmdline(p)]
        assert not alive, f"fold processes outlived their parent: {alive}"
    finally:
        if parent.poll() is None:
            parent.kill()
