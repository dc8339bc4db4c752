"""A model search: a base spec, the space around it, what to optimise and how much to spend.

Schema only, like the rest of training.spec: the API validates a search with it and the
worker turns a trial's parameters into a spec with `trial_spec`. The sampler (Optuna)
lives in the worker; this module only says which values each dimension may take.

A dimension is a list of choices or a range: ``{"low": 1e-4, "high": 1e-2, "log": true}``.
The structural dimensions (family, layers, units, activation, dropout) rebuild the hidden
layers and keep the base spec's output layer; the fit dimensions (optimizer,
learning_rate, batch_size, epochs) replace those fields. A dimension left out keeps the
base spec's value.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from core.vocabulary import DataKind, Task
from training.spec.layers import Dropout
from training.spec.model import ModelSpec
from training.spec.vocabulary import Activation, Strict

Family = Literal["mlp", "cnn", "lstm", "gru", "conv1d"]
OptimizerName = Literal["sgd", "rmsprop", "adagrad", "adadelta", "adam", "adamax", "nadam", "adamw"]

# The hidden-layer families each kind of data allows; the first is the default.
FAMILIES: dict[DataKind, tuple[str, ...]] = {
    DataKind.TABLE: ("mlp",),
    DataKind.IMAGE: ("cnn", "mlp"),
    DataKind.SEQUENCE: ("lstm", "gru", "conv1d", "mlp"),
}
# The metrics k-fold stores for each task; those in LOWER_IS_BETTER are minimised.
METRICS: dict[Task, tuple[str, ...]] = {
    Task.BINARY: (
        "accuracy",
        "error_rate",
        "precision",
        "recall",
        "specificity",
        "npv",
        "f1",
        "f1_macro",
        "f1_weighted",
        "roc_auc",
        "log_loss",
    ),  # fmt: skip
    Task.REGRESSION: ("mse", "rmse", "mae", "r2"),
}
METRICS[Task.MULTICLASS] = METRICS[Task.BINARY]
# Metrics where a smaller value is the better model (a search's default direction, a
# promotion gate's sense of "better"); every other metric is higher-better.
LOWER_IS_BETTER = frozenset({"loss", "log_loss", "mse", "rmse", "mae", "error_rate"})


class IntRange(Strict):
    low: int = Field(ge=0)
    high: int = Field(ge=0)
    step: int = Field(default=1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step != 1:
            raise ValueError("a log-scale range samples every integer: leave step at 1")
        return self


class FloatRange(Strict):
    low: float = Field(ge=0.0)
    high: float = Field(ge=0.0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        _check_range(self.low, self.high, self.log)
        return self


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) is above high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0; got {low}")


class SearchSpace(Strict):
    """Each dimension: a list of choices, or a range ``{"low", "high", "log"}``."""

    family: list[Family] | None = Field(default=None, min_length=1)
    layers: list[int] | IntRange | None = Field(
        default=None, description="Hidden blocks (a Dense, Conv or recurrent layer each)."
    )
    units: list[int] | IntRange | None = Field(
        default=None, description="Units (Dense, LSTM, GRU) or filters (Conv) of each block."
    )
    activation: list[Activation] | None = Field(default=None, min_length=1)
    dropout: list[float] | FloatRange | None = Field(
        default=None, description="Dropout after each block; 0 for none."
    )
    optimizer: list[OptimizerName] | None = Field(default=None, min_length=1)
    learning_rate: list[float] | FloatRange | None = None
    batch_size: list[int] | IntRange | None = None
    epochs: list[int] | IntRange | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> SearchSpace:
        given = self.dimensions()
        if not given:
            raise ValueError(
                f"the space names no dimension; give at least one of {list(type(self).model_fields)}"
            )
        for name, values in given.items():
            if isinstance(values, list) and not values:
                raise ValueError(f"{name}: an empty list of choices")
        return self

    def dimensions(self) -> dict[str, list[Any] | IntRange | FloatRange]:
        """The dimensions given, by name, in a fixed order."""
        return {
            name: value
            for name in type(self).model_fields
            if (value := getattr(self, name)) is not None
        }

    @property
    def structural(self) -> bool:
        return any(
            getattr(self, n) is not None
            for n in ("family", "layers", "units", "activation", "dropout")
        )


class Objective(Strict):
    metric: str = Field(default="f1", description="A metric k-fold stores (mean over folds).")
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None,
        description="Default: minimize for loss, log_loss, mse, rmse, mae and error_rate, "
        "maximize for every other metric.",
    )

    @property
    def maximize(self) -> bool:
        if self.direction is not None:
            return self.direction == "maximize"
        return self.metric not in LOWER_IS_BETTER


class Budget(Strict):
    trials: int = Field(default=20, ge=1, le=1000)
    wall_s: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 24 * 3600,
        description="No trial starts after this many seconds, and running ones stop at "
        "their next fold.",
    )
    parallel: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Trials queued at once: one per worker that may take one.",
    )


class SearchOptions(Strict):
    # None: whichever is cheaper for the trial. Folds that train together end together,
    # and on the course MLP a search of them (50-59 s, 24 trials) beat the same search
    # pruned fold by fold (87 s); bench/search.py.
    prune: bool | None = Field(
        default=None,
        description="Stop a trial between folds when its fold scores are already worse than "
        "the best trial's on the same folds (the pruner). null (the default): only trials "
        "whose folds cannot train together (training.stacked), since folds trained together "
        "end together and cost less than pruning saves; true: every trial, its folds one "
        "by one; false: never.",
    )
    pruner: Literal["wilcoxon", "median"] = Field(
        default="wilcoxon",
        description="wilcoxon: Optuna's WilcoxonPruner (a paired test against the best "
        "trial's folds, at prune_p); median: Optuna's MedianPruner (a fold below the median "
        "of earlier trials' same fold, from the second fold on, after 5 trials).",
    )
    # Not Optuna's 0.1: a one-sided signed-rank test over n paired folds cannot go below
    # 1/2**n, so at 0.1 a 5-fold trial could only stop after its fourth fold. Replayed on
    # two runs of five 24-trial searches each (bench/search.py, docs/benchmarks.md): 0.5
    # saved 30% of fold fits both times and kept the best trial in 9 of 10; 0.3 saved 26%
    # and 28% (10 of 10); 0.1 saved 2%.
    prune_p: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="The pruner's p threshold: a trial stops once a one-sided Wilcoxon "
        "signed-rank test over its folds so far says it is worse than the best trial's at "
        "that level (from its third fold on).",
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="The sampler's seed (TPE).")
    refit: bool = Field(
        default=True, description="Train, export and register the best trial as a version."
    )
    refit_top: int = Field(
        default=1,
        ge=1,
        le=10,
        description="How many of the best complete trials to refit and register, best "
        "first (each a version of its own); 1: the best only.",
    )


def default_family(kind: DataKind) -> str:
    return FAMILIES[kind][0]


def trial_spec(base: ModelSpec, params: Mapping[str, Any], *, kind: DataKind) -> ModelSpec:
    """The spec one trial trains: ``base`` with ``params`` (dimension → value) applied.
    Raises pydantic's ValidationError when the combination is not a valid spec."""
    data: dict[str, Any] = base.model_dump(mode="json")
    if any(n in params for n in ("family", "layers", "units", "activation", "dropout")):
        data["layers"] = _hidden(base, params, kind) + [data["layers"][-1]]
    if "optimizer" in params or "learning_rate" in params:
        optimizer = dict(data["optimizer"])
        if "optimizer" in params and params["optimizer"] != optimizer.get("name"):
            # Another optimizer's own parameters do not carry over; its rate does.
            optimizer = {"name": params["optimizer"], "learning_rate": optimizer["learning_rate"]}
        if "learning_rate" in params:
            optimizer["learning_rate"] = float(params["learning_rate"])
        data["optimizer"] = optimizer
    for name in ("batch_size", "epochs"):
        if name in params:
            data[name] = int(params[name])
    return ModelSpec.model_validate(data)


def _hidden(base: ModelSpec, params: Mapping[str, Any], kind: DataKind) -> list[dict[str, Any]]:
    defaults = _base_blocks(base)
    family = str(params.get("family", default_family(kind)))
    n = int(params.get("layers", defaults["layers"]))
    units = int(params.get("units", defaults["units"]))
    activation = str(params.get("activation", defaults["activation"]))
    dropout = float(params.get("dropout", defaults["dropout"]))
    layers: list[dict[str, Any]] = []
    if family == "mlp" and kind != DataKind.TABLE:
        layers.append({"type": "Flatten"})
    for i in range(n):
        if family == "mlp":
            layers.append({"type": "Dense", "units": units, "activation": activation})
        elif family == "cnn":
            layers.append(
                {"type": "Conv2D", "filters": units, "kernel_size": 3, "padding": "same",
                 "activation": activation}
            )  # fmt: skip
            layers.append({"type": "MaxPooling2D", "pool_size": 2})
        elif family == "conv1d":
            layers.append(
                {"type": "Conv1D", "filters": units, "kernel_size": 3, "padding": "same",
                 "activation": activation}
            )  # fmt: skip
        else:  # lstm, gru: every block but the last hands its sequence on
            layers.append(
                {"type": family.upper(), "units": units, "activation": activation,
                 "return_sequences": i < n - 1}
            )  # fmt: skip
        if dropout > 0:
            layers.append({"type": "Dropout", "rate": dropout})
    if family == "cnn":
        layers.append({"type": "Flatten"})
    elif family == "conv1d":
        layers.append({"type": "GlobalAveragePooling1D"})
    return layers


def _base_blocks(base: ModelSpec) -> dict[str, Any]:
    """The base spec's hidden blocks as the structural dimensions' defaults."""
    weighted = [
        layer for layer in base.layers[:-1] if hasattr(layer, "units") or hasattr(layer, "filters")
    ]
    first = weighted[0] if weighted else None
    rates = [layer.rate for layer in base.layers if isinstance(layer, Dropout)]
    return {
        "layers": max(1, len(weighted)),
        "units": getattr(first, "units", None) or getattr(first, "filters", None) or 32,
        "activation": getattr(first, "activation", "relu") if first is not None else "relu",
        "dropout": rates[0] if rates else 0.0,
    }


def corners(space: SearchSpace) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what the door names, parameters) for each value a dimension can reach at its ends,
    the others at their first: every choice, a range's low and high. The structural
    dimensions that change a model's shape together (family, layers) are tried in every
    combination of their ends."""
    ends = {name: _ends(values) for name, values in space.dimensions().items()}
    firsts = {name: values[0] for name, values in ends.items()}
    joint = [n for n in ("family", "layers") if n in ends]
    for combo in itertools.product(*(ends[n] for n in joint)):
        params = {**firsts, **dict(zip(joint, combo, strict=True))}
        yield ", ".join(f"{n}={v!r}" for n, v in zip(joint, combo, strict=True)), params
    for name, values in ends.items():
        if name in joint:
            continue
        for value in values:
            yield f"{name}={value!r}", {**firsts, name: value}


def _ends(values: list[Any] | IntRange | FloatRange) -> list[Any]:
    if isinstance(values, list):
        return list(dict.fromkeys(values))
    return list(dict.fromkeys([values.low, values.high]))


__all__ = [
    "FAMILIES",
    "LOWER_IS_BETTER",
    "METRICS",
    "Budget",
    "FloatRange",
    "IntRange",
    "Objective",
    "SearchOptions",
    "SearchSpace",
    "corners",
    "default_family",
    "trial_spec",
]
