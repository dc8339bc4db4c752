"""The training spec: what a client sends, validated once at the door.

This module is shared by the API (which validates) and the worker (which trusts what
was validated). It must never import TensorFlow or Keras: the API imports it.
"""

from __future__ import annotations

import math
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


Monitor = Literal["loss", "val_loss", "accuracy", "val_accuracy", "mae", "val_mae"]


class EarlyStopping(_Strict):
    """Keras's EarlyStopping: stop a fit when ``monitor`` stops improving."""

    monitor: Monitor = "val_loss"
    patience: int = Field(default=10, ge=1, le=10000)
    min_delta: float = Field(default=0.0, ge=0.0)
    restore_best_weights: bool = True


class ReduceLROnPlateau(_Strict):
    """Keras's ReduceLROnPlateau: multiply the learning rate by ``factor`` on a plateau."""

    monitor: Monitor = "val_loss"
    factor: float = Field(default=0.1, gt=0.0, lt=1.0)
    patience: int = Field(default=10, ge=1, le=10000)
    min_lr: float = Field(default=0.0, ge=0.0)


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

    # How each fit runs (issue 3, training-run half). Validated in _fit_options below.
    early_stopping: EarlyStopping | None = None
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    validation_split: float = Field(
        default=0.0,
        ge=0.0,
        lt=0.5,
        description="Share of each fold's training rows held out (stratified) to monitor "
        "val_* metrics for early stopping and reduce-on-plateau.",
    )
    class_weight: Literal["balanced"] | dict[str, Annotated[float, Field(gt=0.0)]] | None = Field(
        default=None, description="'balanced', or a weight per class label."
    )
    oversample: bool = Field(
        default=False,
        description="Randomly repeat rows of the smaller classes in each fold's training rows "
        "until every class has as many as the largest.",
    )
    device: Literal["auto", "gpu"] = Field(
        default="auto",
        description="'gpu' sends the job to the training-gpu queue, which only workers on GPU "
        "nodes consume; 'auto' to the training queue, where a worker trains on its GPU when "
        "TensorFlow sees one and on its CPU otherwise.",
    )
    test_split: float = Field(
        default=0.0,
        ge=0.0,
        lt=0.5,
        description="Share of rows (stratified) held out before k-fold; the final model is "
        "scored on them and the scores stored as the version's test_metrics.",
    )

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

    @model_validator(mode="after")
    def _fit_options(self) -> ModelSpec:
        for name in ("early_stopping", "reduce_lr_on_plateau"):
            option = getattr(self, name)
            if option is None:
                continue
            monitor = option.monitor
            if monitor.startswith("val_") and self.validation_split == 0:
                raise ValueError(
                    f"{name}.monitor={monitor!r} needs validation rows: set validation_split "
                    "(for example 0.2), or monitor 'loss'"
                )
            metric = monitor.removeprefix("val_")
            allowed = ("loss", "mae") if self.task == "regression" else ("loss", "accuracy")
            if metric not in allowed:
                expected = [m for a in allowed for m in (a, f"val_{a}")]
                raise ValueError(
                    f"{name}.monitor={monitor!r} is not reported for task {self.task!r}; "
                    f"expected one of {expected}"
                )
        if self.class_weight is not None and self.oversample:
            raise ValueError(
                "class_weight and oversample both correct class imbalance; choose one of them"
            )
        if self.task == "regression" and (self.class_weight is not None or self.oversample):
            raise ValueError(
                "class_weight and oversample apply to classification; task 'regression' has "
                "no classes"
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
        if isinstance(self.class_weight, dict):
            unknown = sorted(set(self.class_weight) - set(class_counts))
            missing = sorted(set(class_counts) - set(self.class_weight))
            if unknown or missing:
                raise SpecDataMismatch(
                    f"class_weight needs one weight per class label of the target, "
                    f"{sorted(class_counts)}; unknown: {unknown}, missing: {missing}"
                )
        smallest_label, smallest = min(class_counts.items(), key=lambda kv: kv[1])
        if self.test_split > 0:
            # The k folds split what the test split leaves of the smallest class.
            smallest = math.floor(smallest * (1 - self.test_split))
        if self.k_folds > smallest:
            raise SpecDataMismatch(
                f"k_folds={self.k_folds} is larger than the smallest class "
                f"({smallest_label!r} has {smallest} rows); stratified k-fold needs k <= {smallest}"
                + (f" after test_split={self.test_split:g}" if self.test_split > 0 else "")
            )
        self._check_stratified_splits(class_counts)

    def _check_stratified_splits(self, class_counts: dict[str, int]) -> None:
        # scikit-learn's stratified train_test_split needs at least one row per class on
        # each side; refuse here what would otherwise fail in the worker.
        n_classes, total = len(class_counts), sum(class_counts.values())
        if self.test_split > 0 and math.ceil(total * self.test_split) < n_classes:
            raise SpecDataMismatch(
                f"test_split={self.test_split:g} holds out {math.ceil(total * self.test_split)} "
                f"of {total} rows, fewer than the {n_classes} classes; raise test_split"
            )
        if self.validation_split > 0:
            fit_rows = math.floor(total * (1 - self.test_split) * (self.k_folds - 1) / self.k_folds)
            held = math.ceil(fit_rows * self.validation_split)
            smallest = min(class_counts.values())
            in_fit = math.floor(
                smallest * (1 - self.test_split) * (self.k_folds - 1) / self.k_folds
            )
            if held < n_classes or in_fit < 2:
                raise SpecDataMismatch(
                    f"validation_split={self.validation_split:g} cannot hold out a row of every "
                    f"class from each fold's {fit_rows} training rows (the smallest class has "
                    f"{in_fit} there); raise validation_split, lower k_folds, or use more rows"
                )


class SpecDataMismatch(ValueError):
    """The spec is valid on its own but cannot train on the chosen dataset."""

    code = "spec_data_mismatch"
