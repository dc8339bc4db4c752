"""Optimizers and learning-rate schedules, with the parameters Keras gives each."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from training.spec.vocabulary import Strict


class ExponentialDecay(Strict):
    """lr = initial_learning_rate * decay_rate ** (step / decay_steps), floored if staircase."""

    schedule: Literal["exponential_decay"]
    initial_learning_rate: float = Field(gt=0.0, le=10.0)
    decay_steps: int = Field(ge=1)
    decay_rate: float = Field(gt=0.0, le=1.0)
    staircase: bool = False

    def __format__(self, format_spec: str) -> str:
        return f"exponential_decay from {self.initial_learning_rate:{format_spec}}"


class CosineDecay(Strict):
    """Cosine decay from initial_learning_rate to alpha × that over decay_steps steps."""

    schedule: Literal["cosine_decay"]
    initial_learning_rate: float = Field(gt=0.0, le=10.0)
    decay_steps: int = Field(ge=1)
    alpha: float = Field(default=0.0, ge=0.0, le=1.0)

    def __format__(self, format_spec: str) -> str:
        return f"cosine_decay from {self.initial_learning_rate:{format_spec}}"


Schedule = Annotated[ExponentialDecay | CosineDecay, Field(discriminator="schedule")]
LearningRate = Annotated[float, Field(gt=0.0, le=10.0)] | Schedule


class _Optimizer(Strict):
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
