"""The shape each layer of a spec outputs, worked out as Keras would without TensorFlow.

One rule per layer type in `_RULES`; a new layer type adds its rule there. Every rule
takes the layer's index (for messages), the layer and the shape it gets (batch axis
excluded), and returns the shape it produces or raises `SpecDataMismatch` naming the
layer, what it got and what it expects. `_WEIGHTS` counts the parameters of the layer
types that have any, from the shape each gets, as Keras's `count_params` would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from training.errors import SpecDataMismatch
from training.spec import layers as schema

Shape = tuple[int, ...]

_RANK_NAMES = {
    1: "a flat vector",
    2: "a (steps, features) sequence",
    3: "a (height, width, channels) image",
}
_SHAPE_NAMES = {
    1: "a flat vector (features)",
    2: "(steps, features)",
    3: "(height, width, channels)",
}
_SEQUENCE_HINT = "For a table, cut it into windows (the spec's window) or add Reshape; for images use the 2D layer"
_IMAGE_HINT = "Upload images (an NPZ) or add Reshape(target_shape=[height, width, channels]) first"
_RECURRENT_HINT = (
    "For a table, set the spec's window to cut it into sequences; for images add "
    "Reshape(target_shape=[height, width * channels]) to read rows as steps"
)


def infer_shapes(layers: list[schema.Layer], input_shape: Shape) -> list[Shape]:
    """The shape each layer outputs (batch axis excluded), as Keras would compute it."""
    shape = tuple(input_shape)
    shapes: list[Shape] = []
    for i, layer in enumerate(layers):
        shape = _RULES[type(layer)](i, layer, shape)
        shapes.append(shape)
    return shapes


def count_parameters(layers: list[schema.Layer], input_shape: Shape) -> int:
    """The model's parameters (trainable or not), without building it: what a spec's size
    limit is checked against before any worker is asked to train it."""
    total = 0
    shape = tuple(input_shape)
    for layer, out in zip(layers, infer_shapes(layers, shape), strict=True):
        weights = _WEIGHTS.get(type(layer))
        if weights is not None:
            total += weights(layer, shape)
        shape = out
    return total


def _expect_rank(i: int, layer: schema.Layer, shape: Shape, rank: int, hint: str = "") -> None:
    if len(shape) != rank:
        described = f"{list(shape)}, {_SHAPE_NAMES.get(len(shape), f'rank {len(shape)}')}"
        raise SpecDataMismatch(
            f"layers.{i} ({layer.type}) expects {_RANK_NAMES[rank]} per example; it gets "
            f"{described}. {hint}".rstrip(". ")
        )


def _pair(v: int | list[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _out_len(i: int, layer: schema.Layer, size: int, k: int, s: int, padding: str) -> int:
    n = math.ceil(size / s) if padding == "same" else (size - k) // s + 1
    if n < 1:
        raise SpecDataMismatch(
            f"layers.{i} ({layer.type}) with window {k} and padding 'valid' needs an input of "
            f"at least {k} along each spatial axis; it gets {size}. Use padding 'same', a "
            "smaller kernel/pool size, or fewer downsampling layers before it"
        )
    return n


def _same(_i: int, _layer: Any, shape: Shape) -> Shape:
    return shape


def _dense(i: int, layer: schema.Dense, shape: Shape) -> Shape:
    hint = "Add Flatten or a global pooling layer before it" if len(shape) > 1 else ""
    _expect_rank(i, layer, shape, 1, hint)
    return (layer.units,)


def _flatten(_i: int, _layer: schema.Flatten, shape: Shape) -> Shape:
    return (math.prod(shape),)


def _reshape(i: int, layer: schema.Reshape, shape: Shape) -> Shape:
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


def _embedding(i: int, layer: schema.Embedding, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 1)
    return (shape[0], layer.output_dim)


def _conv1d(i: int, layer: schema.Conv1D, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 2, _SEQUENCE_HINT)
    steps = _out_len(i, layer, shape[0], layer.kernel_size, layer.strides, layer.padding)
    return (steps, layer.filters)


def _pool1d(i: int, layer: schema.MaxPooling1D | schema.AveragePooling1D, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 2, _SEQUENCE_HINT)
    stride = layer.strides or layer.pool_size
    return (_out_len(i, layer, shape[0], layer.pool_size, stride, layer.padding), shape[1])


def _global1d(i: int, layer: schema.GlobalAveragePooling1D, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 2, _SEQUENCE_HINT)
    return (shape[1],)


def _spatial(
    i: int, layer: schema.Layer, shape: Shape, k: tuple[int, int], s: tuple[int, int], padding: str
) -> tuple[int, int]:
    return (
        _out_len(i, layer, shape[0], k[0], s[0], padding),
        _out_len(i, layer, shape[1], k[1], s[1], padding),
    )


def _conv2d(i: int, layer: schema.Conv2D, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 3, _IMAGE_HINT)
    h, w = _spatial(i, layer, shape, _pair(layer.kernel_size), _pair(layer.strides), layer.padding)
    return (h, w, layer.filters)


def _pool2d(i: int, layer: schema.MaxPooling2D | schema.AveragePooling2D, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 3, _IMAGE_HINT)
    k = _pair(layer.pool_size)
    s = _pair(layer.strides) if layer.strides is not None else k
    h, w = _spatial(i, layer, shape, k, s, layer.padding)
    return (h, w, shape[2])


def _global2d(i: int, layer: schema.GlobalAveragePooling2D, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 3, _IMAGE_HINT)
    return (shape[2],)


def _recurrent(i: int, layer: schema.SimpleRNN | schema.LSTM | schema.GRU, shape: Shape) -> Shape:
    _expect_rank(i, layer, shape, 2, _RECURRENT_HINT)
    return (shape[0], layer.units) if layer.return_sequences else (layer.units,)


_RULES: dict[type, Callable[[int, Any, Shape], Shape]] = {
    schema.Dense: _dense,
    schema.Dropout: _same,
    schema.BatchNormalization: _same,
    schema.Flatten: _flatten,
    schema.Reshape: _reshape,
    schema.Embedding: _embedding,
    schema.Conv1D: _conv1d,
    schema.MaxPooling1D: _pool1d,
    schema.AveragePooling1D: _pool1d,
    schema.GlobalAveragePooling1D: _global1d,
    schema.Conv2D: _conv2d,
    schema.MaxPooling2D: _pool2d,
    schema.AveragePooling2D: _pool2d,
    schema.GlobalAveragePooling2D: _global2d,
    schema.SimpleRNN: _recurrent,
    schema.LSTM: _recurrent,
    schema.GRU: _recurrent,
}


def _recurrent_weights(gates: int, extra_bias: int) -> Callable[[Any, Shape], int]:
    def count(layer: Any, shape: Shape) -> int:
        units: int = layer.units
        return gates * (units * (shape[-1] + units) + units * (1 + extra_bias))

    return count


_WEIGHTS: dict[type, Callable[[Any, Shape], int]] = {
    schema.Dense: lambda layer, shape: (shape[-1] + 1) * layer.units,
    # gamma, beta, and the moving mean and variance, per channel.
    schema.BatchNormalization: lambda _layer, shape: 4 * shape[-1],
    schema.Embedding: lambda layer, _shape: layer.input_dim * layer.output_dim,
    schema.Conv1D: lambda layer, shape: (layer.kernel_size * shape[-1] + 1) * layer.filters,
    schema.Conv2D: lambda layer, shape: (
        (math.prod(_pair(layer.kernel_size)) * shape[-1] + 1) * layer.filters
    ),
    schema.SimpleRNN: _recurrent_weights(1, 0),
    schema.LSTM: _recurrent_weights(4, 0),
    # Keras's GRU defaults to reset_after=True: a second bias vector per gate.
    schema.GRU: _recurrent_weights(3, 1),
}
