"""Build and compile the Keras model a spec describes.

TensorFlow and Keras are imported inside functions, never at module import: a Celery
parent that imports this module and then forks must not have loaded TensorFlow
(design.md: a fit in a forked child hangs).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from training.spec import Dense, Dropout, ModelSpec

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
    import keras

    return keras


def standardiser_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std of the rows a model trains on; a constant column gets std 1."""
    X64 = np.asarray(X, dtype=np.float64)
    mean = X64.mean(axis=0)
    std = X64.std(axis=0)
    std[std == 0] = 1.0
    return mean, std


def build_model(
    spec: ModelSpec, *, n_features: int, mean: np.ndarray, std: np.ndarray
) -> keras.Model:
    keras = import_keras()
    mean64 = np.asarray(mean, dtype=np.float64).reshape(-1)
    std64 = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean64.shape != (n_features,) or std64.shape != (n_features,):
        raise ValueError(
            f"mean and std need {n_features} values each; got {mean64.size} and {std64.size}"
        )
    std64 = np.where(std64 == 0, 1.0, std64)
    layers: list[Any] = [
        keras.Input((n_features,), name="features"),
        # Rescaling rather than Normalization: Normalization's mean/variance become
        # dangling graph inputs in the tf2onnx export. Lists keep the .keras config JSON.
        keras.layers.Rescaling(
            scale=(1.0 / std64).tolist(), offset=(-mean64 / std64).tolist(), name="standardise"
        ),
    ]
    for layer in spec.layers:
        if isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.units, activation=layer.activation))
        elif isinstance(layer, Dropout):
            layers.append(keras.layers.Dropout(layer.rate))
    model = keras.Sequential(layers)
    optimizer = getattr(keras.optimizers, _OPTIMIZERS[spec.optimizer.name])(
        learning_rate=spec.optimizer.learning_rate
    )
    loss = getattr(keras.losses, _LOSSES[spec.loss])()
    model.compile(optimizer=optimizer, loss=loss, metrics=_progress_metrics(keras, spec))
    return model


def _progress_metrics(keras: Any, spec: ModelSpec) -> list[Any]:
    # Shown per epoch while a job runs; the fold scores come from metrics.py.
    if spec.task == "regression":
        return [keras.metrics.MeanAbsoluteError(name="mae")]
    if spec.loss == "binary_crossentropy":
        return [keras.metrics.BinaryAccuracy(name="accuracy")]
    if spec.loss == "categorical_crossentropy":
        return [keras.metrics.CategoricalAccuracy(name="accuracy")]
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
