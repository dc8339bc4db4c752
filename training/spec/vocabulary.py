"""The names a spec may use, and the strict base of every part of it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from core.vocabulary import Task

Activation = Literal[
    "linear",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "softplus",
    "leaky_relu",
]
# An LSTM or GRU gate scales the state it keeps; an unbounded gate lets that state grow
# without limit, step after step. Keras accepts any activation there, but such a model's
# outputs explode with the data, and then Keras and ONNX Runtime part by more than float32
# can hide (a GRU with a linear or elu gate failed parity on random data; sigmoid, tanh
# and softmax never did). Refused at the door, not after training.
GateActivation = Literal["sigmoid", "tanh", "softmax"]
LossName = Literal[
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mse",
    "mae",
    "huber",
]
Initializer = Literal[
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "zeros",
    "ones",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "orthogonal",
]
Padding = Literal["valid", "same"]
Monitor = Literal["loss", "val_loss", "accuracy", "val_accuracy", "mae", "val_mae"]

LOSSES_FOR_TASK: dict[Task, tuple[LossName, ...]] = {
    Task.BINARY: ("binary_crossentropy",),
    Task.MULTICLASS: ("sparse_categorical_crossentropy", "categorical_crossentropy"),
    Task.REGRESSION: ("mse", "mae", "huber"),
}


class Strict(BaseModel):
    """Unknown fields are refused and a validated part never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
