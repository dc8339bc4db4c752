"""Export a Keras model to ONNX and prove that ONNX Runtime gives the same outputs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from training.builder import import_keras

if TYPE_CHECKING:
    import keras

INPUT_NAME = "features"
OUTPUT_NAME = "output"
OPSET = 17
# Every layer family the spec accepts was built, fitted, exported and checked against ONNX
# Runtime (tests/unit/training/test_export.py); all agree within 1e-4, recurrent layers
# included. Beyond |output| = 10 the check is relative: float32 holds 1e5 only to 0.008.
PARITY_TOLERANCE = 1e-4
PARITY_RELATIVE_TOLERANCE = 1e-5


def to_onnx(
    model: keras.Model, *, input_shape: tuple[int, ...] | None = None, n_features: int | None = None
) -> bytes:
    """Serialised ONNX model with one FP32 input "features" [-1, *input_shape] and one
    output "output". ``n_features=F`` is ``input_shape=(F,)``.

    ``tf2onnx.convert.from_keras`` fails on Keras 3 models, so the model is wrapped in a
    ``tf.function`` with an explicit signature and converted from that.
    """
    import_keras()
    import tensorflow as tf
    import tf2onnx

    if input_shape is None:
        if n_features is None:
            raise ValueError("to_onnx needs input_shape (or n_features for a table)")
        input_shape = (n_features,)
    dims = [None, *(int(d) for d in input_shape)]

    @tf.function(  # type: ignore[untyped-decorator]
        input_signature=[tf.TensorSpec(dims, tf.float32, name=INPUT_NAME)]
    )
    def serve(x: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(x, training=False)}

    with _portable_recurrent_layers(model):
        proto, _ = tf2onnx.convert.from_function(
            serve, input_signature=serve.input_signature, opset=OPSET
        )
    data: bytes = proto.SerializeToString()
    return data


@contextmanager
def _portable_recurrent_layers(model: keras.Model) -> Iterator[None]:
    """Trace LSTM and GRU layers through Keras's generic loop, not cuDNN.

    Where TensorFlow sees a GPU, Keras runs LSTM/GRU as one ``CudnnRNNV3`` op, which tf2onnx
    cannot convert (it writes the op into the graph with a warning, and ONNX Runtime then
    refuses the file). The generic loop computes the same function and converts to ONNX
    Loop/Scan ops. Training keeps cuDNN; only the export trace is switched.
    """
    layers = [layer for layer in model.layers if hasattr(layer, "use_cudnn")]
    before = [layer.use_cudnn for layer in layers]
    for layer in layers:
        layer.use_cudnn = False
    try:
        yield
    finally:
        for layer, value in zip(layers, before, strict=True):
            layer.use_cudnn = value


def check_parity(
    model: keras.Model,
    onnx_bytes: bytes,
    X: np.ndarray,
    *,
    tolerance: float = PARITY_TOLERANCE,
    relative_tolerance: float = PARITY_RELATIVE_TOLERANCE,
) -> dict[str, Any]:
    """Compare Keras and ONNX Runtime (CPU) outputs on the same rows.

    Each output must be within ``tolerance`` of Keras's, or within ``relative_tolerance``
    of it relatively, whichever allows more: absolute for probabilities and small values,
    relative from |output| = 10 (1e-4 / 1e-5) up. Float32 holds an output of 100,000 only
    to 0.008, so a regression on prices in dollars failed an absolute 1e-4 on rounding
    alone (0.0625 apart at ~1e5, six parts in ten million); a wrong export is off by far
    more than 1e-5 of its output. ``max_rel_diff`` covers the outputs checked relatively
    (0 when there are none).

    The ONNX side is addressed by the names the signature promises, so an export with
    other names fails here rather than in the predictor.
    """
    import onnxruntime as ort

    X = np.asarray(X, dtype=np.float32)
    expected = np.asarray(model.predict(X, verbose=0), dtype=np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: X})
    actual = np.asarray(actual, dtype=np.float32)
    if actual.shape != expected.shape:
        max_abs_diff = max_rel_diff = float("inf")
        passed = False
    elif expected.size == 0:
        max_abs_diff = max_rel_diff = 0.0
        passed = True
    else:
        size = np.abs(expected.astype(np.float64))
        diff = np.abs(expected.astype(np.float64) - actual)
        max_abs_diff = float(np.max(diff))
        # Relative only where the check is relative: next to a probability of 1e-9 a
        # difference of 1e-9 is "100%", which says nothing and would alarm a reader.
        large = size > tolerance / relative_tolerance
        max_rel_diff = float(np.max(diff[large] / size[large])) if large.any() else 0.0
        # A NaN difference compares False, so it fails as it should.
        passed = bool(np.all(diff <= np.maximum(tolerance, relative_tolerance * size)))
    return {
        "max_abs_diff": max_abs_diff,
        "max_rel_diff": max_rel_diff,
        "tolerance": tolerance,
        "relative_tolerance": relative_tolerance,
        "rows": int(X.shape[0]),
        "passed": passed,
        "runtime": f"onnxruntime {ort.__version__}",
    }
