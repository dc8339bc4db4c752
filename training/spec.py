"""The training spec: what a client sends, validated once at the door.

This module is shared by the API (which validates) and the worker (which trusts what
was validated). It must never import TensorFlow or Keras: the API imports it.

Besides field-by-field validation, ``check_against_data`` infers the shape every layer
produces from the dataset's item shape (pure Python), so a Conv2D on a table or a Dense
on images without a Flatten is refused with a message before a job is queued.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

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
# An LSTM or GRU gate scales the state it keeps; an unbounded gate lets that state grow
# without limit, step after step. Keras accepts any activation there, but such a model's
# outputs explode with the data, and then Keras and ONNX Runtime part by more than float32
# can hide (a GRU with a linear or elu gate failed parity on random data; sigmoid, tanh
# and softmax never did). Refused at the door, not after training.
GateActivation = Literal["sigmoid", "tanh", "softmax"]
OptimizerName = Literal["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamax", "nadam", "adamw"]
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
DataKind = Literal["table", "image", "sequence"]

LOSSES_FOR_TASK: dict[str, tuple[str, ...]] = {
    "binary": ("binary_crossentropy",),
    "multiclass": ("sparse_categorical_crossentropy", "categorical_crossentropy"),
    "regression": ("mse", "mae", "huber"),
}

# Every layer family below was built, fitted, exported with tf2onnx (from_function) and
# checked against ONNX Runtime in tests/unit/training/test_layer_families.py; all agree
# within 1e-4, recurrent layers included. The one surprise was Keras's exact "gelu",
# whose TensorFlow kernel uses Erfc, which tf2onnx cannot convert: the builder writes the
# same function with erf instead (training/builder.py), so "gelu" is accepted.
PARITY_TOLERANCE = 1e-4
# Beyond |output| = 10 the parity check is relative: float32 holds 1e5 only to 0.008.
PARITY_RELATIVE_TOLERANCE = 1e-5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Regularizer(_Strict):
    """L1, L2 or both (L1L2): ``{"l1": 0.01}``, ``{"l2": 0.01}``, ``{"l1": 0.01, "l2": 0.01}``."""

    l1: float | None = Field(default=None, ge=0.0, le=10.0)
    l2: float | None = Field(default=None, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _one_of(self) -> Regularizer:
        if self.l1 is None and self.l2 is None:
            raise ValueError('a regularizer needs "l1", "l2" or both, e.g. {"l2": 0.01}')
        return self


class WeightedLayer(_Strict):
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class Dense(WeightedLayer):
    type: Literal["Dense"]
    units: int = Field(ge=1, le=65536)
    activation: Activation = "linear"


class Dropout(_Strict):
    type: Literal["Dropout"]
    rate: float = Field(ge=0.0, lt=1.0)


class Flatten(_Strict):
    type: Literal["Flatten"]


class Reshape(_Strict):
    """``target_shape`` excludes the batch axis; one entry may be -1 (inferred)."""

    type: Literal["Reshape"]
    target_shape: list[Annotated[int, Field(ge=-1, le=1_000_000)]] = Field(
        min_length=1, max_length=4
    )

    @model_validator(mode="after")
    def _dims(self) -> Reshape:
        if 0 in self.target_shape or self.target_shape.count(-1) > 1:
            raise ValueError("target_shape needs positive sizes, with at most one -1")
        return self


class Conv1D(WeightedLayer):
    type: Literal["Conv1D"]
    filters: int = Field(ge=1, le=4096)
    kernel_size: int = Field(ge=1, le=1024)
    strides: int = Field(default=1, ge=1, le=1024)
    padding: Padding = "valid"
    activation: Activation = "linear"


Size2D = (
    int | Annotated[list[Annotated[int, Field(ge=1, le=1024)]], Field(min_length=2, max_length=2)]
)


class Conv2D(WeightedLayer):
    type: Literal["Conv2D"]
    filters: int = Field(ge=1, le=4096)
    kernel_size: Size2D
    strides: Size2D = 1
    padding: Padding = "valid"
    activation: Activation = "linear"


class _Pool1D(_Strict):
    pool_size: int = Field(default=2, ge=1, le=1024)
    strides: int | None = Field(default=None, ge=1, le=1024)
    padding: Padding = "valid"


class MaxPooling1D(_Pool1D):
    type: Literal["MaxPooling1D"]


class AveragePooling1D(_Pool1D):
    type: Literal["AveragePooling1D"]


class _Pool2D(_Strict):
    pool_size: Size2D = 2
    strides: Size2D | None = None
    padding: Padding = "valid"


class MaxPooling2D(_Pool2D):
    type: Literal["MaxPooling2D"]


class AveragePooling2D(_Pool2D):
    type: Literal["AveragePooling2D"]


class GlobalAveragePooling1D(_Strict):
    type: Literal["GlobalAveragePooling1D"]


class GlobalAveragePooling2D(_Strict):
    type: Literal["GlobalAveragePooling2D"]


class BatchNormalization(_Strict):
    type: Literal["BatchNormalization"]
    momentum: float = Field(default=0.99, ge=0.0, lt=1.0)
    epsilon: float = Field(default=1e-3, gt=0.0, le=1.0)


class Embedding(_Strict):
    """Integer codes 0..input_dim-1 → vectors of ``output_dim``; must be the first layer."""

    type: Literal["Embedding"]
    input_dim: int = Field(ge=1, le=10_000_000)
    output_dim: int = Field(ge=1, le=65536)
    embeddings_initializer: Initializer = "random_uniform"


class _Recurrent(WeightedLayer):
    units: int = Field(ge=1, le=65536)
    activation: Activation = "tanh"
    return_sequences: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class SimpleRNN(_Recurrent):
    type: Literal["SimpleRNN"]


class LSTM(_Recurrent):
    type: Literal["LSTM"]
    recurrent_activation: GateActivation = "sigmoid"


class GRU(_Recurrent):
    type: Literal["GRU"]
    recurrent_activation: GateActivation = "sigmoid"


Layer = Annotated[
    Dense
    | Dropout
    | Flatten
    | Reshape
    | Conv1D
    | Conv2D
    | MaxPooling1D
    | MaxPooling2D
    | AveragePooling1D
    | AveragePooling2D
    | GlobalAveragePooling1D
    | GlobalAveragePooling2D
    | BatchNormalization
    | Embedding
    | SimpleRNN
    | LSTM
    | GRU,
    Field(discriminator="type"),
]


class ExponentialDecay(_Strict):
    """lr = initial_learning_rate * decay_rate ** (step / decay_steps), floored if staircase."""

    schedule: Literal["exponential_decay"]
    initial_learning_rate: float = Field(gt=0.0, le=10.0)
    decay_steps: int = Field(ge=1)
    decay_rate: float = Field(gt=0.0, le=1.0)
    staircase: bool = False

    def __format__(self, format_spec: str) -> str:
        return f"exponential_decay from {self.initial_learning_rate:{format_spec}}"


class CosineDecay(_Strict):
    """Cosine decay from initial_learning_rate to alpha × that over decay_steps steps."""

    schedule: Literal["cosine_decay"]
    initial_learning_rate: float = Field(gt=0.0, le=10.0)
    decay_steps: int = Field(ge=1)
    alpha: float = Field(default=0.0, ge=0.0, le=1.0)

    def __format__(self, format_spec: str) -> str:
        return f"cosine_decay from {self.initial_learning_rate:{format_spec}}"


Schedule = Annotated[ExponentialDecay | CosineDecay, Field(discriminator="schedule")]
LearningRate = Annotated[float, Field(gt=0.0, le=10.0)] | Schedule


class _Optimizer(_Strict):
    learning_rate: LearningRate = 0.001


class _Moments(_Optimizer):
    beta_1: float = Field(default=0.9, ge=0.0, lt=1.0)
    beta_2: float = Field(default=0.999, ge=0.0, lt=1.0)
    epsilon: float = Field(default=1e-7, gt=0.0, le=1.0)


class SGD(_Optimizer):
    name: Literal["sgd"]
    learning_rate: LearningRate = 0.01
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    nesterov: bool = False


class RMSprop(_Optimizer):
    name: Literal["rmsprop"]
    rho: float = Field(default=0.9, gt=0.0, lt=1.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    epsilon: float = Field(default=1e-7, gt=0.0, le=1.0)


class Adagrad(_Optimizer):
    name: Literal["adagrad"]
    initial_accumulator_value: float = Field(default=0.1, ge=0.0)
    epsilon: float = Field(default=1e-7, gt=0.0, le=1.0)


class Adadelta(_Optimizer):
    name: Literal["adadelta"]
    rho: float = Field(default=0.95, gt=0.0, lt=1.0)
    epsilon: float = Field(default=1e-7, gt=0.0, le=1.0)


class Adam(_Moments):
    name: Literal["adam"] = "adam"
    amsgrad: bool = False


class Adamax(_Moments):
    name: Literal["adamax"]


class Nadam(_Moments):
    name: Literal["nadam"]


class AdamW(_Moments):
    name: Literal["adamw"]
    weight_decay: float = Field(default=0.004, ge=0.0, le=1.0)
    amsgrad: bool = False


def _optimizer_name(value: Any) -> str:
    # "name" may be left out and means Adam, as it did before optimizers had parameters.
    if isinstance(value, dict):
        return str(value.get("name", "adam"))
    return str(getattr(value, "name", "adam"))


Optimizer = Annotated[
    Annotated[SGD, Tag("sgd")]
    | Annotated[RMSprop, Tag("rmsprop")]
    | Annotated[Adagrad, Tag("adagrad")]
    | Annotated[Adadelta, Tag("adadelta")]
    | Annotated[Adam, Tag("adam")]
    | Annotated[Adamax, Tag("adamax")]
    | Annotated[Nadam, Tag("nadam")]
    | Annotated[AdamW, Tag("adamw")],
    Discriminator(_optimizer_name),
]


class Window(_Strict):
    """Cut a time-series table into windows: X is ``steps`` consecutive rows of every
    column (the target's past values included), y the target ``horizon`` rows after the
    window's last row."""

    steps: int = Field(ge=1, le=10_000)
    horizon: int = Field(default=1, ge=1, le=10_000)


@dataclass(frozen=True)
class DataInfo:
    """What the door knows about a dataset without loading it.

    ``item_shape`` is one example's raw shape: ``(F,)`` for a table (target excluded),
    ``(H, W, C)`` for images. ``n_columns`` counts every column of a table, the target
    included (a sequence window takes them all), and ``all_numeric`` says whether the
    target is numeric too. ``integer_features`` says whether every feature is an integer.
    """

    kind: Literal["table", "image"]
    n_rows: int
    item_shape: tuple[int, ...]
    n_columns: int = 0
    integer_features: bool = False
    all_numeric: bool = True


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
    training rows; per channel for images, per feature over steps for sequences), so
    clients send raw values. Classification folds are stratified.
    """

    task: Task
    layers: list[Layer] = Field(min_length=1, max_length=64)
    optimizer: Optimizer = Adam()
    loss: LossName
    epochs: int = Field(default=50, ge=1, le=10000)
    batch_size: int = Field(default=32, ge=1, le=65536)
    k_folds: int = Field(default=5, ge=2, le=50)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    window: Window | None = Field(
        default=None,
        description="Set it to train on a time-series table cut into windows (a sequence).",
    )

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
        if self.task == "regression" and (self.class_weight is not None or self.oversample):
            raise ValueError(
                "class_weight and oversample apply to classification; task 'regression' has "
                "no classes"
            )
        return self

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].units  # type: ignore[union-attr]  # checked Dense above

    def data_kind(self, dataset_kind: str) -> DataKind:
        """What the model trains on: a table with a window becomes a sequence."""
        if dataset_kind == "image":
            return "image"
        return "sequence" if self.window is not None else "table"

    def input_shape(self, data: DataInfo) -> tuple[int, ...]:
        """The model's input shape for one example (batch axis excluded)."""
        if self.window is not None:
            return (self.window.steps, data.n_columns)
        return data.item_shape

    def check_against_data(
        self, *, class_counts: dict[str, int] | None, data: DataInfo | None = None
    ) -> None:
        """Refuse a spec that cannot train on a dataset whose target has these class counts.

        ``class_counts`` is None when the target is not a class label (float values).
        With ``data``, the layers are also checked against the dataset's shapes. Raises
        ``SpecDataMismatch`` with a message that names what was expected.
        """
        if data is not None:
            self._check_shapes(data)
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
            units = self.n_outputs
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

    def _check_shapes(self, data: DataInfo) -> None:
        n_examples = data.n_rows
        if self.window is not None:
            if data.kind != "table":
                raise SpecDataMismatch(
                    f"window is for time-series tables (CSV); this dataset holds {data.kind}s"
                )
            if not data.all_numeric:
                raise SpecDataMismatch(
                    "a window feeds every column, the target included, to the model at each "
                    "step, so every column must be numeric; this dataset's target is not"
                )
            n_examples = data.n_rows - self.window.steps - self.window.horizon + 1
            if n_examples < 2 * self.k_folds:
                raise SpecDataMismatch(
                    f"a window of {self.window.steps} steps with horizon {self.window.horizon} "
                    f"leaves {max(n_examples, 0)} windows in a series of {data.n_rows} rows; "
                    f"k_folds={self.k_folds} needs at least {2 * self.k_folds}: use a shorter "
                    "window or horizon, or a longer series"
                )
        if isinstance(self.layers[0], Embedding):
            if data.kind != "table" or not data.integer_features:
                raise SpecDataMismatch(
                    "layers.0: Embedding looks up integer codes, so every feature column must "
                    "hold integers (0 .. input_dim-1); this dataset's features are not all integers"
                )
        infer_shapes(self.layers, self.input_shape(data))


def infer_shapes(layers: list[Layer], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The shape each layer outputs (batch axis excluded), as Keras would compute it.

    Raises ``SpecDataMismatch`` naming the layer, the shape it got and what it expects.
    """
    shape = tuple(input_shape)
    shapes: list[tuple[int, ...]] = []
    for i, layer in enumerate(layers):
        shape = _layer_output(i, layer, shape)
        shapes.append(shape)
    return shapes


def _describe(shape: tuple[int, ...]) -> str:
    names = {1: "a flat vector (features)", 2: "(steps, features)", 3: "(height, width, channels)"}
    return f"{list(shape)}, {names.get(len(shape), f'rank {len(shape)}')}"


def _expect_rank(i: int, kind: str, shape: tuple[int, ...], rank: int, hint: str) -> None:
    if len(shape) != rank:
        raise SpecDataMismatch(
            f"layers.{i} ({kind}) expects {_RANK_NAMES[rank]} per example; it gets "
            f"{_describe(shape)}. {hint}".rstrip(". ")
        )


_RANK_NAMES = {
    1: "a flat vector",
    2: "a (steps, features) sequence",
    3: "a (height, width, channels) image",
}


def _pair(v: int | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _out_len(i: int, kind: str, size: int, k: int, s: int, padding: str) -> int:
    n = math.ceil(size / s) if padding == "same" else (size - k) // s + 1
    if n < 1:
        raise SpecDataMismatch(
            f"layers.{i} ({kind}) with window {k} and padding 'valid' needs an input of at least "
            f"{k} along each spatial axis; it gets {size}. Use padding 'same', a smaller "
            "kernel/pool size, or fewer downsampling layers before it"
        )
    return n


def _layer_output(i: int, layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    kind = layer.type
    if isinstance(layer, Dropout | BatchNormalization):
        return shape
    if isinstance(layer, Dense):
        _expect_rank(
            i,
            kind,
            shape,
            1,
            "Add Flatten or a global pooling layer before it" if len(shape) > 1 else "",
        )
        return (layer.units,)
    if isinstance(layer, Flatten):
        return (math.prod(shape),)
    if isinstance(layer, Reshape):
        target = list(layer.target_shape)
        total = math.prod(shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if total % known:
                raise SpecDataMismatch(
                    f"layers.{i} (Reshape) cannot make {layer.target_shape} from {list(shape)} "
                    f"({total} values): {total} is not a multiple of {known}"
                )
            target[target.index(-1)] = total // known
        if math.prod(target) != total:
            raise SpecDataMismatch(
                f"layers.{i} (Reshape) target_shape {layer.target_shape} holds "
                f"{math.prod(target)} values but its input {list(shape)} holds {total}; "
                "the sizes must multiply to the same number"
            )
        return tuple(target)
    if isinstance(layer, Embedding):
        _expect_rank(i, kind, shape, 1, "")
        return (shape[0], layer.output_dim)
    if isinstance(layer, Conv1D | MaxPooling1D | AveragePooling1D | GlobalAveragePooling1D):
        _expect_rank(
            i,
            kind,
            shape,
            2,
            "For a table, cut it into windows (the spec's window) or add Reshape; "
            "for images use the 2D layer",
        )
        if isinstance(layer, GlobalAveragePooling1D):
            return (shape[1],)
        if isinstance(layer, Conv1D):
            steps = _out_len(i, kind, shape[0], layer.kernel_size, layer.strides, layer.padding)
            return (steps, layer.filters)
        stride = layer.strides or layer.pool_size
        return (_out_len(i, kind, shape[0], layer.pool_size, stride, layer.padding), shape[1])
    if isinstance(layer, Conv2D | MaxPooling2D | AveragePooling2D | GlobalAveragePooling2D):
        _expect_rank(
            i,
            kind,
            shape,
            3,
            "Upload images (an NPZ) or add Reshape(target_shape=[height, width, channels]) first",
        )
        if isinstance(layer, GlobalAveragePooling2D):
            return (shape[2],)
        if isinstance(layer, Conv2D):
            k, s, channels = _pair(layer.kernel_size), _pair(layer.strides), layer.filters
        else:
            k = _pair(layer.pool_size)
            s = _pair(layer.strides) if layer.strides is not None else k
            channels = shape[2]
        h = _out_len(i, kind, shape[0], k[0], s[0], layer.padding)
        w = _out_len(i, kind, shape[1], k[1], s[1], layer.padding)
        return (h, w, channels)
    # SimpleRNN, LSTM, GRU
    _expect_rank(
        i,
        kind,
        shape,
        2,
        "For a table, set the spec's window to cut it into sequences; for images add "
        "Reshape(target_shape=[height, width * channels]) to read rows as steps",
    )
    return (shape[0], layer.units) if layer.return_sequences else (layer.units,)


class SpecDataMismatch(ValueError):
    """The spec is valid on its own but cannot train on the chosen dataset."""

    code = "spec_data_mismatch"
