"""The ONNX export and its parity check.

On a GPU Keras runs LSTM and GRU as one cuDNN op that tf2onnx cannot convert. No GPU is
here, so Keras is told it has one (its own check, patched): the trace then takes the cuDNN
path exactly as it would on a GPU node, and the export must still give ONNX Runtime a file
it loads and that agrees with Keras.
"""

from __future__ import annotations

import importlib
from typing import get_args

import numpy as np
import onnx
import pytest

from training.builder import import_keras
from training.export import check_parity, to_onnx


@pytest.mark.parametrize("layer", ["LSTM", "GRU"])
def test_recurrent_layers_export_without_cudnn_ops_where_a_gpu_is_seen(
    layer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keras = import_keras()
    rnn = importlib.import_module("keras.src.backend.tensorflow.rnn")
    model = keras.Sequential(
        [keras.Input((6, 3)), getattr(keras.layers, layer)(5), keras.layers.Dense(1)]
    )
    X = np.random.default_rng(0).normal(size=(20, 6, 3)).astype(np.float32)
    expected = model.predict(X, verbose=0)  # on the CPU, before Keras is told of a GPU

    monkeypatch.setattr(rnn, "_is_gpu_available", lambda: True)
    onnx_bytes = to_onnx(model, input_shape=(6, 3))

    ops = {node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node}
    assert not any(op.startswith("Cudnn") for op in ops), ops
    assert model.layers[0].use_cudnn == "auto"  # training keeps cuDNN
    monkeypatch.undo()
    parity = check_parity(model, onnx_bytes, X)
    assert parity["passed"], parity
    assert np.allclose(model.predict(X, verbose=0), expected)


def _dense(bias: float, seed: int) -> object:
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    model.layers[-1].bias.assign([bias])
    return model


def test_parity_is_absolute_for_small_outputs_and_relative_for_large_ones() -> None:
    X = np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32)
    large = _dense(123_456.0, seed=0)
    parity = check_parity(large, to_onnx(large, n_features=4), X)
    assert parity["passed"], parity
    assert parity["max_rel_diff"] <= 1e-5

    # Another model's file: a real mismatch fails, small outputs or large.
    for bias in (0.0, 123_456.0):
        ours, other = _dense(bias, seed=0), _dense(bias, seed=1)
        failed = check_parity(ours, to_onnx(other, n_features=4), X)
        assert not failed["passed"], failed
        assert failed["max_abs_diff"] > 1e-4
        # Relative differences are reported only for outputs checked relatively.
        assert (failed["max_rel_diff"] > 1e-5) == (bias > 0)


def test_every_recurrent_activation_and_gate_the_spec_accepts_exports_faithfully() -> None:
    # The layer-family tests train with the default activations; here every activation
    # the schema accepts for SimpleRNN, LSTM and GRU, and every gate, on untrained weights
    # and inputs twice the standardised scale.
    from training.builder import build_model
    from training.spec import Activation, GateActivation, ModelSpec

    activations, gates = get_args(Activation), get_args(GateActivation)
    X = np.random.default_rng(0).normal(size=(64, 6, 3)).astype(np.float32) * 2
    failed = []
    for layer in ("SimpleRNN", "LSTM", "GRU"):
        for i, activation in enumerate(activations):
            spec_layer = {"type": layer, "units": 5, "activation": activation}
            if layer != "SimpleRNN":
                spec_layer["recurrent_activation"] = gates[i % len(gates)]
            spec = ModelSpec.model_validate(
                {
                    "task": "regression",
                    "loss": "mse",
                    "window": {"steps": 6, "horizon": 1},
                    "layers": [spec_layer, {"type": "Dense", "units": 1}],
                    "k_folds": 2,
                }
            )
            model = build_model(
                spec, input_shape=(6, 3), mean=np.zeros(3, np.float32), std=np.ones(3, np.float32)
            )
            parity = check_parity(model, to_onnx(model, input_shape=(6, 3)), X)
            if not parity["passed"]:
                failed.append((spec_layer, parity["max_abs_diff"]))
    assert not failed
