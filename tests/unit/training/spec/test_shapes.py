"""training/spec/shapes.py: the shape every layer produces, as Keras computes it."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from training.errors import SpecDataMismatch
from training.spec import ModelSpec, infer_shapes
from training.spec.layers import Layer
from training.spec.shapes import _RULES


def _spec(layers: list[dict[str, Any]], **extra: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"task": "regression", "loss": "mse", "layers": [*layers, {"type": "Dense", "units": 1}]}
        | extra
    )


def test_shape_inference_follows_keras_arithmetic() -> None:
    spec = _spec(
        [
            {"type": "Conv2D", "filters": 4, "kernel_size": 3},
            {"type": "MaxPooling2D", "pool_size": 2, "padding": "same"},
            {
                "type": "Conv2D",
                "filters": 2,
                "kernel_size": [1, 2],
                "strides": 2,
                "padding": "same",
            },
            {"type": "Flatten"},
        ]
    )
    assert infer_shapes(spec.layers, (8, 8, 1)) == [(6, 6, 4), (3, 3, 4), (2, 2, 2), (8,), (1,)]
    seq = _spec(
        [
            {"type": "Conv1D", "filters": 3, "kernel_size": 4, "strides": 2},
            {"type": "LSTM", "units": 5, "return_sequences": True},
            {"type": "GlobalAveragePooling1D"},
        ]
    )
    assert infer_shapes(seq.layers, (10, 2)) == [(4, 3), (4, 5), (5,), (1,)]


def _layers() -> list[type]:
    union = get_args(get_args(Layer)[0])
    return list(union)


def test_every_layer_the_schema_accepts_has_a_shape_rule() -> None:
    assert sorted(t.__name__ for t in _layers()) == sorted(t.__name__ for t in _RULES)


@pytest.mark.parametrize(
    ("layers", "shape", "needle"),
    [
        ([{"type": "Dense", "units": 2}], (4, 4, 1), "Add Flatten or a global pooling layer"),
        (
            [{"type": "Conv1D", "filters": 2, "kernel_size": 5}],
            (3, 2),
            "needs an input of at least 5",
        ),
        ([{"type": "GRU", "units": 2}], (6,), "set the spec's window"),
        ([{"type": "Reshape", "target_shape": [4, -1]}], (6,), "6 is not a multiple of 4"),
        ([{"type": "MaxPooling2D"}], (5,), "Upload images (an NPZ)"),
    ],
)
def test_a_layer_that_cannot_take_its_input_names_itself_and_what_it_expects(
    layers: list[dict[str, Any]], shape: tuple[int, ...], needle: str
) -> None:
    spec = _spec([*layers, {"type": "Flatten"}])
    with pytest.raises(SpecDataMismatch, match=r"layers\.0 \(") as info:
        infer_shapes(spec.layers, shape)
    assert needle in str(info.value)
