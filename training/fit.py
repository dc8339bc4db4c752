"""One fit of a spec's model, and its scores on rows it did not train on.

Every fit standardises with statistics of its own training rows only, so a fold never
sees its validation rows before it is scored.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import resample
from sklearn.utils.class_weight import compute_class_weight

from core.vocabulary import Task
from training.builder import build_model, import_keras, standardiser_stats
from training.errors import Cancelled, NonFiniteLoss
from training.hooks import FoldResult, Hooks
from training.metrics import MetricValue, classification_metrics, regression_metrics
from training.spec import ModelSpec

# At most this many batches per tf.function call: 38 -> 15 ms an epoch on the course MLP,
# while a big model still sees a cancel within a few dozen batches.
STEPS_PER_EXECUTION = 32


def hold_out(
    X: np.ndarray, y: np.ndarray, *, share: float, spec: ModelSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X kept, X held out, y kept, y held out): ``share`` of the rows held out of a fit
    (validation_split) or of the whole run (test_split). At random, stratified for
    classification; windows of a series are held out last in time, `Window.gap` windows
    after the kept ones, since neighbouring windows share rows."""
    if spec.window is not None:
        n_out = math.ceil(len(y) * share)
        end = len(y) - n_out - spec.window.gap
        return X[:end], X[len(y) - n_out :], y[:end], y[len(y) - n_out :]
    kept, out, y_kept, y_out = train_test_split(
        X,
        y,
        test_size=share,
        random_state=spec.seed,
        stratify=None if spec.task == Task.REGRESSION else y,
    )
    return kept, out, y_kept, y_out


@dataclass(frozen=True)
class FitPlan:
    """How every fit of one run trains: the spec, the caller's hooks, and the spec's
    per-label class weights keyed by the class index the model is trained on (the caller
    maps labels to indices; "balanced" weights come from each fit's own rows)."""

    spec: ModelSpec
    hooks: Hooks = field(default_factory=Hooks)
    label_weights: dict[int, float] | None = None


def run_fold(
    plan: FitPlan,
    X: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    fold: int,
) -> FoldResult:
    """Train on one fold's training rows and score on its validation rows."""
    started = time.perf_counter()
    model, history = fit(
        plan, X[train_idx], y[train_idx], validation=(X[val_idx], y[val_idx]), fold=fold
    )
    output = predict(model, np.asarray(X[val_idx], dtype=np.float32))
    metrics = metrics_of(plan.spec, y[val_idx], output)
    seconds = time.perf_counter() - started
    return FoldResult(
        fold,
        len(train_idx),
        len(val_idx),
        metrics,
        history,
        seconds,
        y_true=y[val_idx],
        output=output,
    )


def metrics_of(spec: ModelSpec, y: np.ndarray, output: np.ndarray) -> dict[str, MetricValue]:
    """The fold (or test-set) metrics of a model's ``output`` on rows with targets ``y``."""
    if spec.task == Task.REGRESSION:
        return dict(regression_metrics(y, output))
    return classification_metrics(y, output, n_classes=spec.n_classes)


def fit(
    plan: FitPlan,
    X: np.ndarray,
    y: np.ndarray,
    *,
    validation: tuple[np.ndarray, np.ndarray] | None,
    fold: int | None,
) -> tuple[Any, dict[str, list[float]]]:
    """The fitted model and its per-epoch history; ``fold`` None is the final refit."""
    keras = import_keras()
    spec = plan.spec
    # Seed before building too: the initial weights are drawn when layers are built.
    keras.utils.set_random_seed(spec.seed)
    classify = spec.task != Task.REGRESSION
    if spec.validation_split > 0:
        # Held out of this fit's own rows: early stopping and the plateau never look at
        # the rows the fold is scored on. The curves' val_* are then these rows' values.
        X, X_val, y, y_val = hold_out(X, y, share=spec.validation_split, spec=spec)
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
        validation_data = (np.asarray(validation[0], np.float32), fit_targets(validation[1], spec))
    history = model.fit(
        epoch_batches(X, fit_targets(y, spec), spec=spec),
        epochs=spec.epochs,
        class_weight=class_weights(spec, y, plan.label_weights) if classify else None,
        callbacks=_callbacks(keras, plan, fold, validation_data),
        shuffle=False,  # the pipeline shuffles; fit would only warn that it cannot
        verbose=0,
    )
    return model, {k: [float(v) for v in vs] for k, vs in history.history.items()}


def _callbacks(
    keras: Any, plan: FitPlan, fold: int | None, validation: tuple[np.ndarray, np.ndarray] | None
) -> list[Any]:
    # The watch comes first: the val_* values it adds to each epoch's logs are what early
    # stopping, the plateau and the history see.
    spec = plan.spec
    callbacks = [_watch(keras, plan, fold, validation)]
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
    return callbacks


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


def predict(model: Any, X: np.ndarray, chunk: int = 8192) -> np.ndarray:
    # A direct call, not model.predict: predict traces a new tf.function for every fold's
    # model, which is slower on small folds and makes TensorFlow warn about retracing.
    parts = [np.asarray(model(X[i : i + chunk], training=False)) for i in range(0, len(X), chunk)]
    return np.concatenate(parts)


def fit_targets(y: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Targets as the loss wants them: one-hot for categorical crossentropy, else as given."""
    if spec.loss == "categorical_crossentropy":
        return np.eye(spec.n_classes, dtype=np.float32)[np.asarray(y, dtype=np.int64)]
    if spec.task in (Task.REGRESSION, Task.BINARY):
        return np.asarray(y, dtype=np.float32)
    return np.asarray(y, dtype=np.int64)


def refuse_non_finite(spec: ModelSpec, logs: dict[str, float], *, where: str, epoch: int) -> None:
    """Raise NonFiniteLoss when an epoch's losses are not finite: the fit diverged."""
    bad = {k: v for k, v in logs.items() if "loss" in k and not math.isfinite(v)}
    if bad:
        raise NonFiniteLoss(
            f"training diverged in {where}, epoch {epoch}: {bad}; lower the "
            f"optimizer's learning_rate (now {spec.optimizer.learning_rate:g}) or "
            "check the data for extreme values"
        )


def _watch(
    keras: Any, plan: FitPlan, fold: int | None, validation: tuple[np.ndarray, np.ndarray] | None
) -> Any:
    """A Keras callback that scores the validation rows, reports epochs, stops on cancel
    and refuses a diverged loss."""
    where = f"fold {fold}" if fold is not None else "the final refit"
    phase = "cv" if fold is not None else "refit"
    hooks, spec = plan.hooks, plan.spec

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
            y_pred = keras.ops.convert_to_tensor(predict(model, X_val))
            logs = {"val_loss": float(model.compute_loss(y=y_val, y_pred=y_pred, training=False))}
            for metric in self.clones:
                metric.reset_state()
                metric.update_state(y_val, y_pred)
                logs[f"val_{metric.name}"] = float(metric.result())
            return logs

        def on_train_batch_end(self, batch: int, logs: object = None) -> None:  # noqa: ARG002
            if hooks.stopped():
                raise Cancelled(f"training was cancelled during {where}")

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            if validation is not None and logs is not None:
                logs.update(self.validation_logs())
            values = {k: float(v) for k, v in (logs or {}).items()}
            refuse_non_finite(spec, values, where=where, epoch=epoch + 1)
            if hooks.on_epoch is not None:
                hooks.on_epoch(phase, fold, epoch + 1, values)

    return Watch()
