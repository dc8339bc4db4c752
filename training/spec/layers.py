"""The layers a spec may stack, with the parameters each accepts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from training.spec.vocabulary import Activation, GateActivation, Initializer, Padding, Strict


class Regularizer(Strict):
    """L1, L2 or both (L1L2): ``{"l1": 0.01}``, ``{"l2": 0.01}``, ``{"l1": 0.01, "l2": 0.01}``."""

    l1: float | None = Field(default=None, ge=0.0, le=10.0)
    l2: float | None = Field(default=None, ge=0.0, le=10.0)

    @model_validator(mode="after")
    def _one_of(self) -> Regularizer:
        if self.l1 is None and self.l2 is None:
            raise ValueError('a regularizer needs "l1", "l2" or both, e.g. {"l2": 0.01}')
        return self


class WeightedLayer(Strict):
    kernel_initializer: Initializer = "glorot_uniform"
    bias_initializer: Initializer = "zeros"
    kernel_regularizer: Regularizer | None = None
    bias_regularizer: Regularizer | None = None


class Dense(WeightedLayer):
    type: Literal["Dense"]
    units: int = Field(ge=1, le=65536)
    activation: Activation = "linear"


class Dropout(Strict):
    type: Literal["Dropout"]
    rate: float = Field(ge=0.0, lt=1.0)


class Flatten(Strict):
    type: Literal["Flatten"]


class Reshape(Strict):
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


class _Pool1D(Strict):
    pool_size: int = Field(default=2, ge=1, le=1024)
    strides: int | None = Field(default=None, ge=1, le=1024)
    padding: Padding = "valid"


class MaxPooling1D(_Pool1D):
    type: Literal["MaxPooling1D"]


class AveragePooling1D(_Pool1D):
    type: Literal["AveragePooling1D"]


class _Pool2D(Strict):
    pool_size: Size2D = 2
    strides: Size2D | None = None
    padding: Padding = "valid"


class MaxPooling2D(_Pool2D):
    type: Literal["MaxPooling2D"]


class AveragePooling2D(_Pool2D):
    type: Literal["AveragePooling2D"]


class GlobalAveragePooling1D(Strict):
    type: Literal["GlobalAveragePooling1D"]


class GlobalAveragePooling2D(Strict):
    type: Literal["GlobalAveragePooling2D"]


class BatchNormalization(Strict):
    type: Literal["BatchNormalization"]
    momentum: float = Field(default=0.99, ge=0.0, lt=1.0)
    epsilon: float = Field(default=1e-3, gt=0.0, le=1.0)


class Embedding(Strict):
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
