"""training/export.py: the ONNX export and its parity check.

Every layer family trains, exports to ONNX and passes the parity check: each model below
runs the whole pipeline (k-fold, refit, tf2onnx export, ONNX Runtime against Keras) on a
few dozen examples for two epochs; together they cover every layer, activation,
optimizer and schedule the spec accepts, and every data kind.

On a GPU Keras runs LSTM and GRU as one cuDNN op that tf2onnx cannot convert. No GPU is
here, so Keras is told it has one (its own check, patched): the trace then takes the cuDNN
path exactly as it would on a GPU node, and the export must still give ONNX Runtime a file
it loads and that agrees with Keras.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, get_args

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from core.vocabulary import DataKind
from training.builder import build_model, import_keras
from training.data import Table, load_sequences, load_table
from training.export import check_parity, to_onnx
from training.pipeline import TrainingResult, run_training
from training.spec import ModelSpec, infer_shapes
from training.spec.vocabulary import Activation, GateActivation


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


W = {"kernel_initializer": "he_normal", "kernel_regularizer": {"l1": 1e-4, "l2": 1e-3}}


def _digits_images(n: int = 90, classes: int = 3) -> Table:
    digits = load_digits()
    keep = digits.target < classes
    X = digits.images[keep][:n].astype(np.float32)[..., np.newaxis]
    y = digits.target[keep][:n].astype(np.int64)
    return Table(X, y, None, list(range(classes)), "y", kind=DataKind.IMAGE)


def _series_csv(n: int = 80) -> bytes:
    t = np.arange(n, dtype=np.float64)
    frame = pd.DataFrame(
        {
            "load": np.sin(t / 5.0) + 0.1 * np.cos(t),
            "temp": np.cos(t / 7.0),
            "out": np.sin((t + 1) / 5.0),
        }
    )
    return str(frame.to_csv(index=False)).encode()


def _spec(task: str, loss: str, layers: list[dict[str, Any]], **extra: Any) -> ModelSpec:
    return ModelSpec.model_validate(
        {"task": task, "loss": loss, "layers": layers, "epochs": 2, "batch_size": 16, "k_folds": 2}
        | extra
    )


def _cnn_multiclass() -> tuple[Table, ModelSpec]:
    spec = _spec(
        "multiclass",
        "sparse_categorical_crossentropy",
        [
            {
                "type": "Conv2D",
                "filters": 4,
                "kernel_size": 3,
                "padding": "same",
                "activation": "relu",
                **W,
            },
            {"type": "BatchNormalization"},
            {"type": "MaxPooling2D", "pool_size": 2},
            {
                "type": "Conv2D",
                "filters": 4,
                "kernel_size": [2, 2],
                "strides": [1, 1],
                "activation": "elu",
            },
            {"type": "AveragePooling2D", "pool_size": 2, "padding": "same"},
            {"type": "GlobalAveragePooling2D"},
            {
                "type": "Dense",
                "units": 3,
                "activation": "softmax",
                "bias_regularizer": {"l2": 0.01},
            },
        ],
        optimizer={
            "name": "sgd",
            "momentum": 0.9,
            "nesterov": True,
            "learning_rate": {
                "schedule": "exponential_decay",
                "initial_learning_rate": 0.05,
                "decay_steps": 10,
                "decay_rate": 0.9,
            },
        },
    )
    return _digits_images(), spec


def _cnn_flatten_binary() -> tuple[Table, ModelSpec]:
    images = _digits_images(classes=2, n=60)
    spec = _spec(
        "binary",
        "binary_crossentropy",
        [
            {"type": "Conv2D", "filters": 3, "kernel_size": 3, "strides": 2, "activation": "gelu"},
            {"type": "MaxPooling2D", "pool_size": 1},
            {"type": "Flatten"},
            {"type": "Dropout", "rate": 0.2},
            {
                "type": "Dense",
                "units": 4,
                "activation": "swish",
                "kernel_initializer": "lecun_normal",
            },
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
        optimizer={"name": "adamax", "learning_rate": 0.01, "beta_1": 0.8},
    )
    return images, spec


def _recurrent_regression() -> tuple[Table, ModelSpec]:
    spec = _spec(
        "regression",
        "huber",
        [
            {
                "type": "Conv1D",
                "filters": 4,
                "kernel_size": 3,
                "padding": "same",
                "activation": "relu",
            },
            {"type": "MaxPooling1D", "pool_size": 2},
            {"type": "AveragePooling1D", "pool_size": 1},
            {
                "type": "LSTM",
                "units": 4,
                "return_sequences": True,
                "kernel_initializer": "orthogonal",
            },
            {"type": "GRU", "units": 3, "dropout": 0.1, "kernel_regularizer": {"l2": 1e-3}},
            {"type": "Dense", "units": 1},
        ],
        optimizer={
            "name": "rmsprop",
            "rho": 0.8,
            "learning_rate": {
                "schedule": "cosine_decay",
                "initial_learning_rate": 0.01,
                "decay_steps": 20,
            },
        },
        window={"steps": 6, "horizon": 2},
    )
    return load_sequences(_series_csv(), target="out", task="regression", steps=6, horizon=2), spec


def _simple_rnn() -> tuple[Table, ModelSpec]:
    spec = _spec(
        "regression",
        "mse",
        [
            {"type": "SimpleRNN", "units": 4, "return_sequences": True, "activation": "tanh"},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": 2, "activation": "selu"},
            {"type": "Dense", "units": 1},
        ],
        optimizer={"name": "nadam", "learning_rate": 0.01},
        window={"steps": 5, "horizon": 1},
    )
    return load_sequences(_series_csv(), target="out", task="regression", steps=5, horizon=1), spec


def _embedding() -> tuple[Table, ModelSpec]:
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 12, size=(60, 5))
    frame = pd.DataFrame(codes, columns=[f"t{i}" for i in range(5)])
    frame["label"] = (codes[:, 0] > 5).astype(int)
    table = load_table(frame.to_csv(index=False).encode(), target="label", task="binary")
    spec = _spec(
        "binary",
        "binary_crossentropy",
        [
            {"type": "Embedding", "input_dim": 12, "output_dim": 3},
            {"type": "GRU", "units": 3, "return_sequences": True},
            {"type": "GlobalAveragePooling1D"},
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
        optimizer={"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.01},
    )
    return table, spec


def _table_reshape_activations() -> tuple[Table, ModelSpec]:
    digits = load_digits(as_frame=True).frame.iloc[:60]
    digits = digits[digits["target"] < 3]
    table = load_table(digits.to_csv(index=False).encode(), target="target", task="multiclass")
    acts = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "silu", "softmax"]
    spec = _spec(
        "multiclass",
        "categorical_crossentropy",
        [
            {"type": "Reshape", "target_shape": [8, 8, 1]},
            {"type": "Conv2D", "filters": 2, "kernel_size": 3, "bias_initializer": "ones"},
            {"type": "Reshape", "target_shape": [-1, 2]},
            {"type": "Conv1D", "filters": 2, "kernel_size": 2, "strides": 2},
            {"type": "Flatten"},
            *({"type": "Dense", "units": 4, "activation": a} for a in acts),
            {"type": "Dense", "units": 3, "activation": "softmax"},
        ],
        optimizer={"name": "adagrad", "learning_rate": 0.05},
    )
    return table, spec


def _adadelta_mlp() -> tuple[Table, ModelSpec]:
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(40, 3)), columns=["a", "b", "c"])
    frame["y"] = frame["a"] * 2 - frame["c"]
    table = load_table(frame.to_csv(index=False).encode(), target="y", task="regression")
    spec = _spec(
        "regression",
        "mae",
        [
            {
                "type": "Dense",
                "units": 4,
                "activation": "relu",
                "kernel_initializer": "random_normal",
            },
            {"type": "BatchNormalization", "momentum": 0.9},
            {"type": "Dense", "units": 1, "kernel_initializer": "zeros"},
        ],
        optimizer={"name": "adadelta", "learning_rate": 1.0, "rho": 0.9},
    )
    return table, spec


CASES = {
    "cnn-gap-multiclass": _cnn_multiclass,
    "cnn-flatten-binary": _cnn_flatten_binary,
    "conv1d-lstm-gru-sequence": _recurrent_regression,
    "simplernn-sequence": _simple_rnn,
    "embedding-gru-table": _embedding,
    "reshape-conv-activations": _table_reshape_activations,
    "mlp-batchnorm-adadelta": _adadelta_mlp,
}


@functools.cache
def _run(case: str) -> tuple[Table, ModelSpec, TrainingResult]:
    table, spec = CASES[case]()
    return table, spec, run_training(table, spec=spec)


@pytest.mark.parametrize("case", list(CASES))
def test_layer_family_trains_exports_and_passes_parity(case: str) -> None:
    table, spec, result = _run(case)

    assert len(result.folds) == 2
    assert result.parity["passed"], result.parity
    assert result.parity["tolerance"] == pytest.approx(1e-4)
    assert result.parity["rows"] == len(table.X)
    item_shape = list(table.X.shape[1:])
    assert result.signature["inputs"][0]["shape"] == [-1, *item_shape]
    assert result.signature["outputs"][0]["shape"] == [-1, spec.n_outputs]
    assert result.signature["kind"] == table.kind
    # The door's pure-Python shape inference agrees with what Keras built.
    assert infer_shapes(spec.layers, tuple(item_shape))[-1] == (spec.n_outputs,)

    graph = onnx.load_from_string(result.onnx_bytes).graph
    assert len(graph.input) == 1
    assert len(graph.output) == 1
    dims = [d.dim_value or -1 for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == [-1, *item_shape]
    session = ort.InferenceSession(result.onnx_bytes, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"features": table.X[:3].astype(np.float32)})
    assert out.shape == (3, spec.n_outputs)
    assert np.isfinite(out).all()


def test_sequence_signature_names_the_window_and_per_step_columns() -> None:
    sig = _run("simplernn-sequence")[2].signature

    assert sig["kind"] == "sequence"
    assert sig["window"] == {"steps": 5, "horizon": 1, "target": "out"}
    assert sig["feature_names"] == ["load", "temp", "out"]
    assert sig["inputs"][0]["shape"] == [-1, 5, 3]


def test_image_signature_has_no_feature_names() -> None:
    sig = _run("cnn-flatten-binary")[2].signature
    assert sig["kind"] == "image"
    assert sig["feature_names"] is None
    assert "window" not in sig
    assert sig["inputs"][0]["shape"] == [-1, 8, 8, 1]
    assert sig["class_labels"] == [0, 1]
