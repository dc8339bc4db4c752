"""The model spec: a Keras Sequential model and how to train and score it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.vocabulary import Task
from training.spec.fit import EarlyStopping, ReduceLROnPlateau, Window
from training.spec.layers import Dense, Embedding, Layer
from training.spec.optimizers import Adam, Optimizer
from training.spec.vocabulary import LOSSES_FOR_TASK, LossName, Strict


class ModelSpec(Strict):
    """A Keras Sequential model and how to train and score it.

    Features are standardised inside the model (mean and standard deviation of the
    training rows; per channel for images, per feature over steps for sequences), so
    clients send raw values. Classification folds are stratified.
    """

    task: Task
    layers: list[Layer] = Field(min_length=1, max_length=64)
    # A factory, not an Adam() default: a default object in the JSON schema is one that
    # OpenAPI client generators refuse (openapi-python-client drops the whole spec).
    optimizer: Optimizer = Field(
        default_factory=Adam,
        description='Default: {"name": "adam", "learning_rate": 0.001} with Keras\'s defaults.',
    )
    loss: LossName
    epochs: int = Field(default=50, ge=1, le=10000)
    batch_size: int = Field(default=32, ge=1, le=65536)
    k_folds: int = Field(default=5, ge=2, le=50)
    cross_validation: bool = Field(
        default=True,
        description="false: for data too small to fold (the AND and XOR gates): no k-fold; "
        "the model trains on every row and its metrics are its scores on those same rows, "
        "marked as such in the version (metrics_on: training_rows). k_folds is then unused.",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    window: Window | None = Field(
        default=None,
        description="Set it to train on a time-series table cut into windows (a sequence).",
    )

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

    @property
    def n_folds(self) -> int:
        """The folds a run trains before its refit: k_folds, or 0 without cross-validation."""
        return self.k_folds if self.cross_validation else 0

    @model_validator(mode="after")
    def _fits_task(self) -> ModelSpec:
        allowed = LOSSES_FOR_TASK[self.task]
        if self.loss not in allowed:
            raise ValueError(
                f"loss {self.loss!r} does not fit task {self.task.value!r}; expected one of {list(allowed)}"
            )
        last = self.layers[-1]
        if not isinstance(last, Dense):
            raise ValueError("the last layer must be Dense (the output layer)")
        expected = {
            Task.BINARY: "a binary classifier's output layer must be Dense(units=1, activation='sigmoid')",
            Task.REGRESSION: "a regression model's output layer must be Dense(units=1, activation='linear')",
        }
        activation = {Task.BINARY: "sigmoid", Task.REGRESSION: "linear"}.get(self.task)
        if activation is not None and (last.units != 1 or last.activation != activation):
            raise ValueError(
                f"{expected[self.task]}; got Dense(units={last.units}, activation={last.activation!r})"
            )
        if self.task == Task.MULTICLASS and last.activation != "softmax":
            raise ValueError(
                "a multiclass classifier's output layer must use activation='softmax' with one "
                f"unit per class; got activation={last.activation!r}"
            )
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Embedding) and i != 0:
                raise ValueError(
                    f"layers.{i}: Embedding must be the first layer (it looks up integer "
                    "codes in the raw input, before any other layer changes them)"
                )
        return self

    @model_validator(mode="after")
    def _fit_options(self) -> ModelSpec:
        for name in ("early_stopping", "reduce_lr_on_plateau"):
            option = getattr(self, name)
            if option is not None:
                self._check_monitor(name, option.monitor)
        if self.reduce_lr_on_plateau is not None and not isinstance(
            self.optimizer.learning_rate, float
        ):
            raise ValueError(
                "reduce_lr_on_plateau changes a fixed learning rate, but optimizer.learning_rate "
                "is a schedule; use one of them (Keras refuses both at once)"
            )
        if self.class_weight is not None and self.oversample:
            raise ValueError(
                "class_weight and oversample both correct class imbalance; choose one of them"
            )
        if self.task == Task.REGRESSION and (self.class_weight is not None or self.oversample):
            raise ValueError(
                "class_weight and oversample apply to classification; task 'regression' has "
                "no classes"
            )
        return self

    def _check_monitor(self, name: str, monitor: str) -> None:
        if monitor.startswith("val_") and self.validation_split == 0:
            raise ValueError(
                f"{name}.monitor={monitor!r} needs validation rows: set validation_split "
                "(for example 0.2), or monitor 'loss'"
            )
        metric = monitor.removeprefix("val_")
        allowed = ("loss", "mae") if self.task == Task.REGRESSION else ("loss", "accuracy")
        if metric not in allowed:
            expected = [m for a in allowed for m in (a, f"val_{a}")]
            raise ValueError(
                f"{name}.monitor={monitor!r} is not reported for task {self.task.value!r}; "
                f"expected one of {expected}"
            )

    @property
    def output_layer(self) -> Dense:
        last = self.layers[-1]
        assert isinstance(last, Dense)  # _fits_task checked it
        return last

    @property
    def n_outputs(self) -> int:
        return self.output_layer.units

    @property
    def n_classes(self) -> int:
        """Classes the output layer scores: 2 for binary, its units for multiclass, 0 for
        regression."""
        return {Task.BINARY: 2, Task.MULTICLASS: self.n_outputs}.get(self.task, 0)
