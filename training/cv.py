"""K-fold cross-validation, one fold after another or in fold processes, and the refit."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit

from core.vocabulary import Task
from training.fit import FitPlan, fit, run_fold
from training.hooks import FoldResult
from training.parallel import run_folds_in_processes
from training.runtime import configure_tensorflow
from training.spec import ModelSpec
from training.stacked import run_stacked, why_not

# Spawning a process and importing TensorFlow in it costs ~5 s, and two fold processes on
# two cores each run ~1.4x slower than one alone: below this many optimizer steps per fold,
# folds run one after another in the calling process. Course MLP, 5 folds, 2 cores
# (bench/kfold_speed.py): 7,800 steps a fold, 16.8 s one after another and 16.7 s in two
# processes; 39,000 steps, 75.4 s and 67.5 s.
MIN_STEPS_FOR_PROCESSES = 15_000


def fold_splits(y: np.ndarray, *, spec: ModelSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) of each fold: stratified for classification; for
    windows of a series, in time order (each fold trains on the windows before the ones
    it is scored on, `Window.gap` windows apart, so that no window it trains on shares a
    row with one it is scored on)."""
    splitter: StratifiedKFold | KFold | TimeSeriesSplit
    if spec.window is not None:
        splitter = TimeSeriesSplit(n_splits=spec.k_folds, gap=spec.window.gap)
    elif spec.task == Task.REGRESSION:
        splitter = KFold(n_splits=spec.k_folds, shuffle=True, random_state=spec.seed)
    else:
        splitter = StratifiedKFold(n_splits=spec.k_folds, shuffle=True, random_state=spec.seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


def folds_sha256(splits: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """A fingerprint of which rows each fold validates on: equal for two runs exactly when
    they were scored on the same folds (a search's trials, a gate's two versions)."""
    digest = hashlib.sha256()
    for _, val_idx in splits:
        digest.update(np.asarray(val_idx, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def fold_process_count(n_rows: int, *, spec: ModelSpec, processes: int) -> int:
    """How many processes the folds of this spec would use: 1 means in this process."""
    n_train = n_rows - n_rows // spec.k_folds
    steps = spec.epochs * math.ceil(n_train / spec.batch_size)
    if processes <= 1 or steps < MIN_STEPS_FOR_PROCESSES:
        return 1
    return min(processes, spec.k_folds)


def run_kfold(
    plan: FitPlan, X: np.ndarray, y: np.ndarray, *, processes: int = 1, together: bool = True
) -> list[FoldResult]:
    """Train and score one model per fold; the plan's ``on_fold`` gets each result as it
    is done.

    With ``together`` (and a spec that allows it, training.stacked.why_not) the k folds
    train at once as one graph, each on its own rows, and end together. Otherwise, with
    ``processes`` > 1 the folds train in that many spawned processes at once (see
    ``fold_process_count``), each TensorFlow pinned to one thread; the hooks still run in
    this process, and the results are the same as one after another.
    """
    X = np.asarray(X, dtype=np.float32)
    splits = fold_splits(y, spec=plan.spec)
    if together and why_not(plan.spec, n_rows=len(y), item_shape=X.shape[1:]) is None:
        configure_tensorflow()
        return run_stacked(plan, X, y, splits)
    n_processes = fold_process_count(len(y), spec=plan.spec, processes=processes)
    if n_processes > 1:
        return run_folds_in_processes(plan, X, y, splits, processes=n_processes)
    configure_tensorflow()
    results: list[FoldResult] = []
    for fold, (train_idx, val_idx) in enumerate(splits, start=1):
        result = run_fold(plan, X, y, train_idx, val_idx, fold)
        results.append(result)
        if plan.hooks.on_fold is not None:
            plan.hooks.on_fold(result)
    return results


def fit_full(plan: FitPlan, X: np.ndarray, y: np.ndarray) -> Any:
    """Train the model that is exported, on every row given, with the spec's fit options."""
    configure_tensorflow()
    model, _ = fit(plan, np.asarray(X, dtype=np.float32), y, validation=None, fold=None)
    return model
