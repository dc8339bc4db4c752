"""A job's k folds trained together, as one graph with a fold axis.

Small models spend a training step in per-operation overhead, not in arithmetic, so k
folds one after another pay that overhead k times. Here every fold's model is a slice of
one model whose weights carry a fold axis — a Dense layer's kernel is [k, inputs, units]
— fed a batch of each fold's own training rows at once ([batch, k, features]), so one
optimizer step advances every fold. The loss is the sum of the folds' own mean losses,
so each slice's gradient is exactly its fold's gradient; every optimizer Kiln offers
updates each weight element on its own, so the folds' weights never mix.

Each fold starts from the weights a fold trained alone starts from (the spec's seed),
sees its own rows once an epoch in the order `training.fit.epoch_batches` gives them,
and is scored on its own validation rows. Folds of unequal size (a row more in some)
are padded with rows that weigh nothing; their shuffle is then over the padded length,
so the order differs from a fold trained alone, not the distribution. Dropout draws its
own masks. Specs this does not cover train one fold at a time (`why_not`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from core.vocabulary import Task
from training.builder import (
    build_loss,
    build_model,
    build_optimizer,
    import_keras,
    standardiser_stats,
)
from training.errors import Cancelled
from training.fit import (
    FitPlan,
    class_weights,
    fit_targets,
    metrics_of,
    oversample,
    predict,
    refuse_non_finite,
)
from training.hooks import FoldResult
from training.spec import ModelSpec
from training.spec.layers import Dense, Dropout

# The steps of one tf.function call: the cancel check runs between calls.
STEPS_PER_CALL = 256


# Above this many stacked training values (rows × folds × features) the folds train one
# at a time: k copies of a large table cost more memory than their steps save time.
MAX_STACKED_VALUES = 50_000_000


def why_not(spec: ModelSpec, *, n_rows: int, item_shape: tuple[int, ...]) -> str | None:
    """Why ``spec``'s folds cannot train together on ``n_rows`` rows of ``item_shape``
    (None: they can)."""
    if len(item_shape) != 1:
        return f"rows of shape {list(item_shape)}: folds train together for tables"
    if n_rows * spec.k_folds * item_shape[0] > MAX_STACKED_VALUES:
        return f"{spec.k_folds} copies of {n_rows} rows × {item_shape[0]} features are too many"
    for i, layer in enumerate(spec.layers):
        if not isinstance(layer, Dense | Dropout):
            return f"layers.{i} is {layer.type}; folds train together for Dense and Dropout only"
        if isinstance(layer, Dense) and (layer.kernel_regularizer or layer.bias_regularizer):
            return f"layers.{i} has a regularizer"
    if spec.early_stopping is not None or spec.reduce_lr_on_plateau is not None:
        return "early stopping and the plateau decide per fold"
    if spec.validation_split > 0:
        return "validation_split holds rows out of each fold's own fit"
    if spec.window is not None:
        return "windows of a series fold in time order, into folds of unequal size"
    return None


def run_stacked(
    plan: FitPlan,
    X: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> list[FoldResult]:
    """Train and score every fold of ``splits`` at once; results as `run_fold` gives."""
    import tensorflow as tf

    keras = import_keras()
    spec, hooks = plan.spec, plan.hooks
    started = time.perf_counter()
    k = len(splits)
    folds = [_fold_rows(plan, X, y, train) for train, _ in splits]
    n = max(len(f["y"]) for f in folds)
    X_train, T_train, M_train = _stack(spec, [f["X"] for f in folds], [f["y"] for f in folds], n)
    # Each row's class weight (1 without class weights); padding rows have none.
    W_train = np.zeros_like(M_train)
    for i, f in enumerate(folds):
        W_train[: len(f["y"]), i] = f["weights"]
    n_val = max(len(val) for _, val in splits)
    X_val, T_val, M_val = _stack(spec, [X[v] for _, v in splits], [y[v] for _, v in splits], n_val)

    model = _FoldModel(keras, spec, k=k, n_features=X.shape[-1], folds=folds)
    optimizer = build_optimizer(keras, spec)
    loss_fn = build_loss(keras, spec, reduction=None)
    variables = model.trainable_weights
    X_train_t = tf.constant(X_train)
    T_train_t = tf.constant(T_train)
    M_train_t = tf.constant(M_train)
    W_train_t = tf.constant(W_train)
    classify = spec.task != Task.REGRESSION

    def fold_losses(t: Any, real: Any, w: Any, out: Any) -> tuple[Any, Any]:
        # Each fold's loss over its own rows in the batch, weighted by class and divided
        # by its row count, as Keras reduces a batch: what the fold would get alone.
        per_row = loss_fn(t, out) * w * real  # [batch, k]
        rows = tf.reduce_sum(real, axis=0)
        return tf.reduce_sum(per_row, axis=0), tf.maximum(rows, 1.0)

    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
    def train_steps(order: Any, first: Any, steps: Any) -> tuple[Any, Any, Any]:
        totals = tf.zeros([k])
        right = tf.zeros([k])
        seen = tf.zeros([k])
        for step in tf.range(first, first + steps):
            idx = order[step * spec.batch_size : (step + 1) * spec.batch_size]
            x = tf.gather(X_train_t, idx)
            t = tf.gather(T_train_t, idx)
            real = tf.gather(M_train_t, idx)
            w = tf.gather(W_train_t, idx)
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                sums, rows = fold_losses(t, real, w, out)
                loss = tf.reduce_sum(sums / rows)
            grads = tape.gradient(loss, [v.value for v in variables])
            optimizer.apply(grads, variables)
            totals += sums
            seen += tf.reduce_sum(real, axis=0)
            right += tf.reduce_sum(_progress(spec, t, out) * real, axis=0)
        return totals, right, seen

    # A new order each epoch, as fit draws it from epoch_batches: a fresh iterator of a
    # seeded shuffle that reshuffles on each iteration.
    orders = (
        tf.data.Dataset.range(n).shuffle(n, seed=spec.seed, reshuffle_each_iteration=True).batch(n)
    )
    n_steps = math.ceil(n / spec.batch_size)
    metric = "accuracy" if classify else "mae"
    histories: list[dict[str, list[float]]] = [{} for _ in range(k)]
    for epoch in range(1, spec.epochs + 1):
        order = tf.cast(next(iter(orders)), tf.int32)
        totals = np.zeros(k)
        right = np.zeros(k)
        seen = np.zeros(k)
        for first in range(0, n_steps, STEPS_PER_CALL):
            if hooks.stopped():
                raise Cancelled("training was cancelled during k-fold")
            steps = min(STEPS_PER_CALL, n_steps - first)
            t_sum, r_sum, s_sum = train_steps(order, tf.constant(first), tf.constant(steps))
            totals += t_sum.numpy()
            right += r_sum.numpy()
            seen += s_sum.numpy()
        val_out = predict(model, X_val)
        # Every fold's validation loss and metric at once, each over its own rows.
        val_loss = _fold_means(loss_fn(T_val, val_out), M_val)
        val_metric = _fold_means(_progress(spec, T_val, val_out), M_val)
        for i in range(k):
            logs = {
                "loss": float(totals[i] / max(seen[i], 1)),
                metric: float(right[i] / max(seen[i], 1)),
                "val_loss": float(val_loss[i]),
                f"val_{metric}": float(val_metric[i]),
            }
            refuse_non_finite(spec, logs, where=f"fold {i + 1}", epoch=epoch)
            for key, v in logs.items():
                histories[i].setdefault(key, []).append(v)
            if hooks.on_epoch is not None:
                hooks.on_epoch("cv", i + 1, epoch, logs)

    val_out = predict(model, X_val)
    # The folds shared one fit: each is given its share of the time.
    seconds = (time.perf_counter() - started) / k
    results = []
    for i, (train, val) in enumerate(splits):
        output = val_out[: len(val), i]
        result = FoldResult(
            i + 1,
            len(train),
            len(val),
            metrics_of(spec, y[val], output),
            histories[i],
            seconds,
            y_true=y[val],
            output=output,
        )
        results.append(result)
        if hooks.on_fold is not None:
            hooks.on_fold(result)
    return results


def _fold_rows(plan: FitPlan, X: np.ndarray, y: np.ndarray, train: np.ndarray) -> dict[str, Any]:
    """One fold's training rows as its fit alone would see them, with each row's class
    weight, and the standardiser statistics of those rows."""
    spec = plan.spec
    X_fold, y_fold = X[train], y[train]
    mean, std = standardiser_stats(X_fold)
    if spec.oversample:
        X_fold, y_fold = oversample(X_fold, y_fold, seed=spec.seed)
    weights = np.ones(len(y_fold), dtype=np.float32)
    if spec.task != Task.REGRESSION:
        cw = class_weights(spec, y_fold, plan.label_weights)
        if cw is not None:
            weights = np.array([cw[int(c)] for c in y_fold], dtype=np.float32)
    return {"X": X_fold, "y": y_fold, "weights": weights, "mean": mean, "std": std}


def _stack(
    spec: ModelSpec, Xs: list[np.ndarray], ys: list[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows [n, k, features], targets [n, k, ...] and which rows are real [n, k] (1; 0 for
    the padding of a shorter fold)."""
    k = len(Xs)
    X = np.zeros((n, k, *Xs[0].shape[1:]), dtype=np.float32)
    targets = [fit_targets(y_i, spec) for y_i in ys]
    T = np.zeros((n, k, *targets[0].shape[1:]), dtype=targets[0].dtype)
    W = np.zeros((n, k), dtype=np.float32)
    for i, (x_i, t_i) in enumerate(zip(Xs, targets, strict=True)):
        X[: len(x_i), i] = x_i
        T[: len(t_i), i] = t_i
        W[: len(t_i), i] = 1.0
    if T.ndim == 2 and spec.task in (Task.BINARY, Task.REGRESSION):
        T = T[..., None]  # [n, k, 1], as the outputs
    return X, T, W


def _progress(spec: ModelSpec, t: Any, out: Any) -> Any:
    """Per row, what the fit's progress metric averages: the absolute error of a
    regression, else 1 where the prediction is right (as Keras's accuracy counts it)."""
    import tensorflow as tf

    if spec.task == Task.REGRESSION:
        return tf.abs(t[..., 0] - out[..., 0])
    if spec.loss == "binary_crossentropy":
        return tf.cast(tf.equal(tf.cast(out[..., 0] > 0.5, tf.float32), t[..., 0]), tf.float32)
    predicted = tf.argmax(out, axis=-1)
    if spec.loss == "categorical_crossentropy":
        return tf.cast(tf.equal(predicted, tf.argmax(t, axis=-1)), tf.float32)
    return tf.cast(tf.equal(predicted, tf.cast(t, tf.int64)), tf.float32)


def _fold_means(values: Any, real: np.ndarray) -> np.ndarray:
    """The mean of [rows, k] ``values`` over each fold's real rows (a padding row's value,
    whatever it is, never counts)."""
    kept = np.where(real > 0, np.asarray(values, dtype=np.float64), 0.0)
    return np.asarray(kept.sum(axis=0) / np.maximum(real.sum(axis=0), 1))


class _FoldModel:
    """The spec's layers with a fold axis: [batch, k, features] → [batch, k, outputs]."""

    def __init__(
        self, keras: Any, spec: ModelSpec, *, k: int, n_features: int, folds: list[dict[str, Any]]
    ) -> None:
        import tensorflow as tf

        # The weights a fold alone starts from: the same seed, the same model, built once.
        keras.utils.set_random_seed(spec.seed)
        alone = build_model(
            spec, n_features=n_features, mean=np.zeros(n_features), std=np.ones(n_features)
        )
        dense = [layer for layer in alone.layers if isinstance(layer, keras.layers.Dense)]
        # The standardiser of each fold's own training rows, as build_model's Rescaling.
        mean = np.stack([np.asarray(f["mean"], dtype=np.float64).reshape(-1) for f in folds])
        std = np.stack([np.asarray(f["std"], dtype=np.float64).reshape(-1) for f in folds])
        std = np.where(std == 0, 1.0, std)
        self.scale = tf.constant((1.0 / std)[None].astype(np.float32))
        self.offset = tf.constant((-mean / std)[None].astype(np.float32))
        self.steps: list[tuple[str, Any, Any, Any]] = []
        kernels = iter(dense)
        for layer in spec.layers:
            if isinstance(layer, Dropout):
                self.steps.append(("dropout", keras.layers.Dropout(layer.rate), None, None))
                continue
            source = next(kernels)
            kernel = keras.Variable(np.repeat(source.kernel.numpy()[None], k, axis=0))
            bias = keras.Variable(np.repeat(source.bias.numpy()[None], k, axis=0))
            self.steps.append(("dense", source.activation, kernel, bias))
        self.trainable_weights = [
            v for _, _, kern, b in self.steps if kern is not None for v in (kern, b)
        ]

    def __call__(self, x: Any, *, training: bool) -> Any:
        import tensorflow as tf

        h = tf.convert_to_tensor(x) * self.scale + self.offset
        for kind, op, kernel, bias in self.steps:
            if kind == "dropout":
                h = op(h, training=training)
            else:
                h = op(tf.einsum("bki,kiu->bku", h, kernel.value) + bias.value)
        return h
