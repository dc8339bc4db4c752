"""The training spec: what a client sends, validated once at the door.

This module is shared by the API (which validates) and the worker (which trusts what
was validated). It must never import TensorFlow or Keras: the API imports it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Task = Literal["binary", "multiclass", "regression"]
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
OptimizerName = Literal["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamax", "nadam", "adamw"]
LossName = Literal[
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "mse",
    "mae",
    "huber",
]

LOSSES_FOR_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("binary_crossentropy",),
    "multiclass": ("sparse_categorical_crossentropy", "categorical_crossentropy"),
    "regression": ("mse", "mae", "huber"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dense(_Strict):
    type: Literal["Dense"]
    units: int = Field(ge=1, le=65536)
    activation: Activation = "linear"


class Dropout(_Strict):
    type: Literal["Dropout"]
    rate: float = Field(ge=0.0, lt=1.0)


Layer = Annotated[Dense | Dropout, Field(discriminator="type")]


class Optimizer(_Strict):
    name: OptimizerName = "adam"
    learning_rate: float = Field(default=0.001, gt=0.0, le=10.0)


class ModelSpec(_Strict):
    """A Keras Sequential model and how to train and score it.

    Features are standardised inside the model (mean and standard deviation of the
    training rows), so clients send raw values. Classification folds are stratified.
    """

    task: Task
    layers: list[Layer] = Field(min_length=1, max_length=64)
    optimizer: Optimizer = Optimizer()
    loss: LossName
    epochs: int = Field(default=50, ge=1, le=10000)
    batch_size: int = Field(default=32, ge=1, le=65536)
    k_folds: int = Field(default=5, ge=2, le=50)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _fits_task(self) -> ModelSpec:
        allowed = LOSSES_FOR_TASK[self.task]
        if self.loss not in allowed:
            raise ValueError(
                f"loss {self.loss!r} does not fit task {self.task!r}; expected one of {list(allowed)}"
            )
        last = self.layers[-1]
        if not isinstance(last, Dense):
            raise ValueError("the last layer must be Dense (the output layer)")
        if self.task == "binary" and (last.units != 1 or last.activation != "sigmoid"):
            raise ValueError(
                "a binary classifier's output layer must be Dense(units=1, activation='sigmoid'); "
                f"got Dense(units={last.units}, activation={last.activation!r})"
            )
        if self.task == "multiclass" and last.activation != "softmax":
            raise ValueError(
                "a multiclass classifier's output layer must use activation='softmax' with one "
                f"unit per class; got activation={last.activation!r}"
            )
        if self.task == "regression" and (last.units != 1 or last.activation != "linear"):
            raise ValueError(
                "a regression model's output layer must be Dense(units=1, activation='linear'); "
                f"got Dense(units={last.units}, activation={last.activation!r})"
            )
        return self

    def check_against_data(self, *, class_counts: dict[str, int] | None) -> None:
        """Refuse a spec that cannot train on a dataset whose target has these class counts.

        ``class_counts`` is None when the target is not a class label (float values).
        Raises ``SpecDataMismatch`` with a message that names what was expected.
        """
        if self.task == "regression":
            return
        if not class_counts:
            raise SpecDataMismatch(
                f"task {self.task!r} needs a target with class labels, but the target column "
                "holds continuous numbers; use task 'regression' or another target"
            )
        n_classes = len(class_counts)
        if self.task == "binary" and n_classes != 2:
            raise SpecDataMismatch(
                f"task 'binary' needs exactly 2 classes in the target; it has {n_classes}"
            )
        if self.task == "multiclass":
            if n_classes < 2:
                raise SpecDataMismatch(
                    f"task 'multiclass' needs at least 2 classes; found {n_classes}"
                )
            units = self.layers[-1].units  # type: ignore[union-attr]  # checked Dense above
            if units != n_classes:
                raise SpecDataMismatch(
                    f"the output layer has {units} units but the target has {n_classes} classes; "
                    f"expected Dense(units={n_classes}, activation='softmax')"
                )
        smallest_label, smallest = min(class_counts.items(), key=lambda kv: kv[1])
        if self.k_folds > smallest:
            raise SpecDataMismatch(
                f"k_folds={self.k_folds} is larger than the smallest class "
                f"({smallest_label!r} has {smallest} rows); stratified k-fold needs k <= {smallest}"
            )


class SpecDataMismatch(ValueError):
    """The spec is valid on its own but cannot train on the chosen dataset."""

    code = "spec_data_mismatch"
