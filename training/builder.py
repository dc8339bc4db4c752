"""Build and compile the Keras model a spec describes.

TensorFlow and Keras are imported inside functions, never at module import: a Celery
parent that imports this module and then forks must not have loaded TensorFlow
(design.md: a fit in a forked child hangs).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from core.vocabulary import Task
from training.spec import ModelSpec
from training.spec.layers import (
    GRU,
    LSTM,
    AveragePooling1D,
    AveragePooling2D,
    BatchNormalization,
    Conv1D,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    Layer,
    MaxPooling1D,
    MaxPooling2D,
    Regularizer,
    Reshape,
    WeightedLayer,
)
from training.spec.optimizers import CosineDecay, ExponentialDecay

if TYPE_CHECKING:
    import keras

_OPTIMIZERS = {
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adam": "Adam",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "adamw": "AdamW",
}
_LOSSES = {
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "mse": "MeanSquaredError",
    "mae": "MeanAbsoluteError",
    "huber": "Huber",
}


def import_keras() -> Any:
    """Import Keras (TensorFlow backend) with TensorFlow's C++ info logs silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "keras" not in sys.modules and os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0":
        _quietly_import_keras()
    import keras

    # Registered on import so a saved model that uses "gelu" loads wherever this ran.
    _gelu(keras)
    return keras


def _quietly_import_keras() -> None:
    """Import Keras with the process's stderr (fd 2) sent to /dev/null: TensorFlow writes
    its oneDNN and absl start-up lines there while it loads, whatever TF_CPP_MIN_LOG_LEVEL
    says (tensorflow/tensorflow#100442). An import error is still raised, after stderr is
    back; a line another thread writes to stderr in those seconds is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def standardiser_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over every axis but the last: per column of a table, per channel of
    images, per feature (over all steps) of sequences. A constant feature gets std 1."""
    X64 = np.asarray(X, dtype=np.float64)
    flat = X64.reshape(-1, X64.shape[-1])
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std[std == 0] = 1.0
    return mean, std


@functools.cache
def _gelu(keras: Any) -> Any:
    # Keras's exact gelu runs TensorFlow's Gelu kernel, which uses Erfc; tf2onnx cannot
    # convert Erfc (checked with TF 2.21, tf2onnx 1.17). The same function written with
    # erf converts to ONNX Erf and agrees with keras.activations.gelu within 5e-7.
    @keras.saving.register_keras_serializable(package="kiln", name="gelu")  # type: ignore[untyped-decorator]
    def gelu(x: Any) -> Any:
        ops = keras.ops
        return 0.5 * x * (1.0 + ops.erf(x * np.float32(1.0 / np.sqrt(2.0))))

    return gelu


def _activation(keras: Any, name: str) -> Any:
    return _gelu(keras) if name == "gelu" else name


def _regularizer(keras: Any, reg: Regularizer | None) -> Any:
    if reg is None:
        return None
    if reg.l1 is not None and reg.l2 is not None:
        return keras.regularizers.L1L2(l1=reg.l1, l2=reg.l2)
    if reg.l1 is not None:
        return keras.regularizers.L1(reg.l1)
    return keras.regularizers.L2(reg.l2)


def _weights(keras: Any, layer: WeightedLayer) -> dict[str, Any]:
    return {
        "kernel_initializer": layer.kernel_initializer,
        "bias_initializer": layer.bias_initializer,
        "kernel_regularizer": _regularizer(keras, layer.kernel_regularizer),
        "bias_regularizer": _regularizer(keras, layer.bias_regularizer),
    }


def _size(v: int | list[int] | None) -> Any:
    return tuple(v) if isinstance(v, list) else v


def build_layer(keras: Any, layer: Layer) -> Any:
    """The Keras layer for one spec layer."""
    L = keras.layers
    if isinstance(layer, Dense):
        return L.Dense(
            layer.units, activation=_activation(keras, layer.activation), **_weights(keras, layer)
        )
    if isinstance(layer, Dropout):
        return L.Dropout(layer.rate)
    if isinstance(layer, Flatten):
        return L.Flatten()
    if isinstance(layer, Reshape):
        return L.Reshape(tuple(layer.target_shape))
    if isinstance(layer, Conv1D | Conv2D):
        cls = L.Conv1D if isinstance(layer, Conv1D) else L.Conv2D
        return cls(
            layer.filters,
            _size(layer.kernel_size),
            strides=_size(layer.strides),
            padding=layer.padding,
            activation=_activation(keras, layer.activation),
            **_weights(keras, layer),
        )
    if isinstance(layer, MaxPooling1D | AveragePooling1D | MaxPooling2D | AveragePooling2D):
        cls = getattr(L, layer.type)
        return cls(
            pool_size=_size(layer.pool_size), strides=_size(layer.strides), padding=layer.padding
        )
    if isinstance(layer, GlobalAveragePooling1D):
        return L.GlobalAveragePooling1D()
    if isinstance(layer, GlobalAveragePooling2D):
        return L.GlobalAveragePooling2D()
    if isinstance(layer, BatchNormalization):
        return L.BatchNormalization(momentum=layer.momentum, epsilon=layer.epsilon)
    if isinstance(layer, Embedding):
        return L.Embedding(
            layer.input_dim, layer.output_dim, embeddings_initializer=layer.embeddings_initializer
        )
    extra: dict[str, Any] = {}
    if isinstance(layer, LSTM | GRU):
        extra["recurrent_activation"] = _activation(keras, layer.recurrent_activation)
    return getattr(L, layer.type)(
        layer.units,
        activation=_activation(keras, layer.activation),
        return_sequences=layer.return_sequences,
        dropout=layer.dropout,
        **_weights(keras, layer),
        **extra,
    )


def build_optimizer(keras: Any, spec: ModelSpec) -> Any:
    opt = spec.optimizer
    params = opt.model_dump(exclude={"name", "learning_rate"})
    return getattr(keras.optimizers, _OPTIMIZERS[opt.name])(
        learning_rate=_learning_rate(keras, opt.learning_rate), **params
    )


def _learning_rate(keras: Any, lr: float | ExponentialDecay | CosineDecay) -> Any:
    schedules = keras.optimizers.schedules
    if isinstance(lr, ExponentialDecay):
        return schedules.ExponentialDecay(
            lr.initial_learning_rate, lr.decay_steps, lr.decay_rate, staircase=lr.staircase
        )
    if isinstance(lr, CosineDecay):
        return schedules.CosineDecay(lr.initial_learning_rate, lr.decay_steps, alpha=lr.alpha)
    return lr


def build_model(
    spec: ModelSpec,
    *,
    input_shape: tuple[int, ...] | None = None,
    n_features: int | None = None,
    mean: np.ndarray,
    std: np.ndarray,
) -> keras.Model:
    """The compiled model: input "features" of ``input_shape`` (batch axis excluded),
    standardised inside the model with ``mean`` and ``std`` (one value per last-axis
    feature), then the spec's layers. ``n_features=F`` is ``input_shape=(F,)``.

    A model whose first layer is an Embedding gets no standardiser: it reads codes.
    """
    keras = import_keras()
    if input_shape is None:
        if n_features is None:
            raise ValueError("build_model needs input_shape (or n_features for a table)")
        input_shape = (n_features,)
    input_shape = tuple(int(d) for d in input_shape)
    n_last = input_shape[-1]
    mean64 = np.asarray(mean, dtype=np.float64).reshape(-1)
    std64 = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean64.shape != (n_last,) or std64.shape != (n_last,):
        raise ValueError(
            f"mean and std need {n_last} values each; got {mean64.size} and {std64.size}"
        )
    std64 = np.where(std64 == 0, 1.0, std64)
    layers: list[Any] = [keras.Input(input_shape, name="features")]
    if not isinstance(spec.layers[0], Embedding):
        # Rescaling rather than Normalization: Normalization's mean/variance become
        # dangling graph inputs in the tf2onnx export. Lists keep the .keras config JSON.
        # The scale broadcasts over the last axis: columns, channels or per-step features.
        layers.append(
            keras.layers.Rescaling(
                scale=(1.0 / std64).tolist(), offset=(-mean64 / std64).tolist(), name="standardise"
            )
        )
    layers.extend(build_layer(keras, layer) for layer in spec.layers)
    model = keras.Sequential(layers)
    loss = build_loss(keras, spec)
    model.compile(
        optimizer=build_optimizer(keras, spec),
        loss=loss,
        metrics=_progress_metrics(keras, spec),
    )
    return model


def build_loss(keras: Any, spec: ModelSpec, **options: Any) -> Any:
    """The Keras loss of the spec (``options``: its reduction, say)."""
    return getattr(keras.losses, _LOSSES[spec.loss])(**options)


def _progress_metrics(keras: Any, spec: ModelSpec) -> list[Any]:
    # Shown per epoch while a job runs; the fold scores come from metrics.py.
    if spec.task == Task.REGRESSION:
        return [keras.metrics.MeanAbsoluteError(name="mae")]
    if spec.loss == "binary_crossentropy":
        return [keras.metrics.BinaryAccuracy(name="accuracy")]
    if spec.loss == "categorical_crossentropy":
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
