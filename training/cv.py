"""K-fold cross-validation and the final refit on all rows.

Every fit standardises with statistics of its own training rows only, so no fold sees
its validation rows before it is scored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.utils import resample
from sklearn.utils.class_weight import compute_class_weight

from training.builder import build_model, import_keras, standardiser_stats
from training.errors import Cancelled, NonFiniteLoss
from training.metrics import MetricValue, classification_metrics, regression_metrics
from training.runtime import configure_tensorflow
from training.spec import ModelSpec

if TYPE_CHECKING:
    import keras

OnEpoch = Callable[[str, int | None, int, dict[str, float]], None]
ShouldStop = Callable[[], bool]
OnFold = Callable[["FoldResult"], None]


@dataclass(frozen=True)
class FoldResult:
    fold: int
    n_train: int
    n_val: int
    metrics: dict[str, MetricValue]
    history: dict[str, list[float]]


def n_classes_of(spec: ModelSpec) -> int:
    if spec.task == "binary":
        return 2
    if spec.task == "multiclass":
        return spec.layers[-1].units  # type: ignore[union-attr]  # spec checks it is Dense
    return 0


def fold_splits(y: np.ndarray, *, spec: ModelSpec) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) of each fold: stratified for classification."""
    splitter: StratifiedKFold | KFold
    if spec.task == "regression":
        splitter = KFold(n_splits=spec.k_folds, shuffle=True, random_state=spec.seed)
    else:
        splitter = StratifiedKFold(n_splits=spec.k_folds, shuffle=True, random_state=spec.seed)
    return list(splitter.split(np.zeros((len(y), 1)), y))


# Spawning a process and importing TensorFlow in it costs ~5 s, and two fold processes on
# two cores each run ~1.4x slower than one alone: below this many optimizer steps per fold,
# folds run one after another in the calling process. Course MLP, 5 folds, 2 cores
# (bench/kfold_speed.py): 7,800 steps a fold, 16.8 s one after another and 16.7 s in two
# processes; 39,000 steps, 75.4 s and 67.5 s.
MIN_STEPS_FOR_PROCESSES = 15_000
# At most this many batches per tf.function call: 38 -> 15 ms an epoch on the course MLP,
# while a big model still sees a cancel within a few dozen batches.
STEPS_PER_EXECUTION = 32


def fold_process_count(n_rows: int, *, spec: ModelSpec, processes: int) -> int:
    """How many processes the folds of this spec would use: 1 means in this process."""
    n_train = n_rows - n_rows // spec.k_folds
    steps = spec.epochs * math.ceil(n_train / spec.batch_size)
    if processes <= 1 or steps < MIN_STEPS_FOR_PROCESSES:
        return 1
    return min(processes, spec.k_folds)


def run_kfold(
    X: np.ndarray,
    y: np.ndarray,
    *,
    spec: ModelSpec,
    on_epoch: OnEpoch | None = None,
    should_stop: ShouldStop | None = None,
    on_fold: OnFold | None = None,
    label_weights: dict[int, float] | None = None,
    processes: int = 1,
) -> list[FoldResult]:
    """Train and score one model per fold; ``on_fold`` gets each result as it is done.

    ``label_weights`` are the spec's per-label class weights keyed by class index (the
    caller maps labels to indices); "balanced" weights are computed from each fold's rows.
    With ``processes`` > 1 the folds train in that many spawned processes at once (see
    ``fold_process_count``), each TensorFlow pinned to one thread; the callbacks still
    run in this process, and the results are the same as one after another.
    """
    X = np.asarray(X, dtype=np.float32)
    splits = fold_splits(y, spec=spec)
    n_processes = fold_process_count(len(y), spec=spec, processes=processes)
    if n_processes > 1:
        from training.parallel import run_folds_in_processes

        return run_folds_in_processes(
            X,
            y,
            splits,
            spec=spec,
            processes=n_processes,
            on_epoch=on_epoch,
            should_stop=should_stop,
            on_fold=on_fold,
            label_weights=label_weights,
        )
    configure_tensorflow()
    results: list[FoldResult] = []
    for fold, (train_idx, val_idx) in enumerate(splits, start=1):
        result = run_fold(
            X,
            y,
            train_idx,
            val_idx,
            fold=fold,
            spec=spec,
            on_epoch=on_epoch,
            should_stop=should_stop,
            label_weights=label_weights,
        )
        results.append(result)
        if on_fold is not None:
            on_fold(result)
    return results


def run_fold(
    X: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    fold: int,
    spec: ModelSpec,
    on_epoch: OnEpoch | None,
    should_stop: ShouldStop | None,
    label_weights: dict[int, float] | None,
) -> FoldResult:
    model, history = _fit(
        X[train_idx],
        y[train_idx],
        spec=spec,
        validation=(X[val_idx], y[val_idx]),
        phase="cv",
        fold=fold,
        on_epoch=on_epoch,
        should_stop=should_stop,
        label_weights=label_weights,
    )
    metrics = score(model, X[val_idx], y[val_idx], spec=spec)
    return FoldResult(fold, len(train_idx), len(val_idx), metrics, history)


def score(model: Any, X: np.ndarray, y: np.ndarray, *, spec: ModelSpec) -> dict[str, MetricValue]:
    """The fold (or test-set) metrics of a trained model on rows it did not train on."""
    output = _predict(model, np.asarray(X, dtype=np.float32))
    if spec.task == "regression":
        return dict(regression_metrics(y, output))
    return classification_metrics(y, output, n_classes=n_classes_of(spec))


def fit_full(
    X: np.ndarray,
    y: np.ndarray,
    *,
    spec: ModelSpec,
    on_epoch: OnEpoch | None = None,
    should_stop: ShouldStop | None = None,
    label_weights: dict[int, float] | None = None,
) -> keras.Model:
    """Train the model that is exported, on every row given, with the spec's fit options."""
    configure_tensorflow()
    model, _ = _fit(
        np.asarray(X, dtype=np.float32),
        y,
        spec=spec,
        validation=None,
        phase="refit",
        fold=None,
        on_epoch=on_epoch,
        should_stop=should_stop,
        label_weights=label_weights,
    )
    return model


def _fit(
    X: np.ndarray,
    y: np.ndarray,
    *,
    spec: ModelSpec,
    validation: tuple[np.ndarray, np.ndarray] | None,
    phase: str,
    fold: int | None,
    on_epoch: OnEpoch | None,
    should_stop: ShouldStop | None,
    label_weights: dict[int, float] | None = None,
) -> tuple[Any, dict[str, list[float]]]:
    keras = import_keras()
    # Seed before building too: the initial weights are drawn when layers are built.
    keras.utils.set_random_seed(spec.seed)
    classify = spec.task != "regression"
    if spec.validation_split > 0:
        # Held out of this fit's own rows: early stopping and the plateau never look at
        # the rows the fold is scored on. The curves' val_* are then these rows' values.
        X, X_val, y, y_val = train_test_split(
            X,
            y,
            test_size=spec.validation_split,
            random_state=spec.seed,
            stratify=y if classify else None,
        )
        validation = (X_val, y_val)
    mean, std = standardiser_stats(X)
    if spec.oversample:
        X, y = oversample(X, y, seed=spec.seed)
    model = build_model(spec, input_shape=X.shape[1:], mean=mean, std=std)
    # Small models spend most of a step in Python and in tf.function calls, not in math:
    # Keras runs this many batches per call instead (the same updates in the same order).
    # Batch callbacks, and so the cancel check, then run once per call. Set here rather
    # than in compile() so the builder stays about the model; Keras reads it when fit
    # first runs.
    model.steps_per_execution = max(
        1, min(STEPS_PER_EXECUTION, math.ceil(len(X) / spec.batch_size))
    )
    validation_data = None
    if validation is not None:
        validation_data = (np.asarray(validation[0], np.float32), _target(validation[1], spec))
    # First in the list: the val_* values it adds to each epoch's logs are what early
    # stopping, the plateau and the history see.
    callbacks = [_watch(keras, spec, phase, fold, on_epoch, should_stop, validation_data)]
    if spec.early_stopping is not None:
        es = spec.early_stopping
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=es.monitor,
                patience=es.patience,
                min_delta=es.min_delta,
                restore_best_weights=es.restore_best_weights,
            )
        )
    if spec.reduce_lr_on_plateau is not None:
        rp = spec.reduce_lr_on_plateau
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=rp.monitor, factor=rp.factor, patience=rp.patience, min_lr=rp.min_lr
            )
        )
    history = model.fit(
        epoch_batches(X, _target(y, spec), spec=spec),
        epochs=spec.epochs,
        class_weight=class_weights(spec, y, label_weights) if classify else None,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles; fit would only warn that it cannot
        verbose=0,
    )
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def epoch_batches(X: np.ndarray, target: np.ndarray, *, spec: ModelSpec) -> Any:
    """The training rows as fit consumes them: every row once an epoch, in a new order
    each epoch (seeded), in batches of ``batch_size``, the last one partial — what fit
    does with arrays. Given arrays, Keras 3 builds a pipeline of index permutations and
    gathers that costs ~20 ms an epoch on one thread, more than the course MLP's 39
    steps: an epoch took 35.5 ms from arrays and 15 ms from this pipeline."""
    import tensorflow as tf

    return (
        tf.data.Dataset.from_tensor_slices((X, target))
        .shuffle(len(X), seed=spec.seed, reshuffle_each_iteration=True)
        .batch(spec.batch_size)
    )


def class_weights(
    spec: ModelSpec, y: np.ndarray, label_weights: dict[int, float] | None
) -> dict[int, float] | None:
    """Keras's ``class_weight`` for these training rows, keyed by class index."""
    if spec.class_weight is None:
        return None
    if spec.class_weight == "balanced":
        classes = np.unique(y)
        weights = compute_class_weight("balanced", classes=classes, y=y)
        return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}
    if label_weights is None:
        raise ValueError("the spec names class weights per label; pass them keyed by index")
    return label_weights


def oversample(X: np.ndarray, y: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Repeat random rows of every smaller class until each has as many as the largest."""
    classes, counts = np.unique(y, return_counts=True)
    biggest = int(counts.max())
    parts = [np.arange(len(y))]
    for c, n in zip(classes, counts, strict=True):
        if n < biggest:
            rows = np.flatnonzero(y == c)
            parts.append(
                resample(rows, replace=True, n_samples=biggest - int(n), random_state=seed + int(c))
            )
    index = np.concatenate(parts)
    # Shuffled once here so the repeated rows are not all in the last batches; Keras
    # shuffles again every epoch.
    index = np.random.default_rng(seed).permutation(index)
    return X[index], y[index]


def _predict(model: Any, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
    # A direct call, not model.predict: predict traces a new tf.function for every fold's
    # model, which is slower on small folds and makes TensorFlow warn about retracing.
    parts = [np.asarray(model(X[i : i + chunk], training=False)) for i in range(0, len(X), chunk)]
    return np.concatenate(parts)


def _target(y: np.ndarray, spec: ModelSpec) -> np.ndarray:
    if spec.loss == "categorical_crossentropy":
        return np.eye(n_classes_of(spec), dtype=np.float32)[np.asarray(y, dtype=np.int64)]
    if spec.task == "regression" or spec.task == "binary":
        return np.asarray(y, dtype=np.float32)
    return np.asarray(y, dtype=np.int64)


def _watch(
    keras: Any,
    spec: ModelSpec,
    phase: str,
    fold: int | None,
    on_epoch: OnEpoch | None,
    should_stop: ShouldStop | None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """A Keras callback that scores the validation rows, reports epochs, stops on cancel
    and refuses a diverged loss."""
    where = f"fold {fold}" if fold is not None else "the final refit"

    class Watch(keras.callbacks.Callback):  # type: ignore[misc]
        clones: list[Any] | None = None

        def validation_logs(self) -> dict[str, float]:
            # What fit(validation_data=...) reports, computed with one call of the model
            # instead of Keras's evaluate loop, which costs as much as a small model's
            # training epoch: the same loss (with regularisation terms) and fresh copies of
            # the compiled metrics, over all rows at once rather than averaged by batch.
            assert validation is not None
            X_val, y_val = validation
            model = self.model
            if self.clones is None:
                self.clones = [
                    type(m).from_config(m.get_config())
                    for group in model.metrics
                    for m in getattr(group, "metrics", [])
                ]
            y_pred = keras.ops.convert_to_tensor(_predict(model, X_val))
            logs = {"val_loss": float(model.compute_loss(y=y_val, y_pred=y_pred, training=False))}
            for metric in self.clones:
                metric.reset_state()
                metric.update_state(y_val, y_pred)
                logs[f"val_{metric.name}"] = float(metric.result())
            return logs

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:  # noqa: ARG002
            if should_stop is not None and should_stop():
                raise Cancelled(f"training was cancelled during {where}")

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if validation is not None and logs is not None:
                logs.update(self.validation_logs())
            values = {k: float(v) for k, v in (logs or {}).items()}
            bad = {k: v for k, v in values.items() if "loss" in k and not math.isfinite(v)}
            if bad:
                raise NonFiniteLoss(
                    f"training diverged in {where}, epoch {epoch + 1}: {bad}; lower the "
                    f"optimizer's learning_rate (now {spec.optimizer.learning_rate:g}) or "
                    "check the data for extreme values"
                )
            if on_epoch is not None:
                on_epoch(phase, fold, epoch + 1, values)

    return Watch()
