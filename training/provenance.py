"""What trained a version: the versions of Kiln and of every library in the training path,
and the device."""

from __future__ import annotations

import importlib.metadata

from training.builder import import_keras


def library_versions() -> dict[str, str]:
    keras = import_keras()
    import numpy
    import onnx
    import onnxruntime
    import sklearn
    import tensorflow as tf
    import tf2onnx

    return {
        "kiln": kiln_version(),
        "tensorflow": str(tf.__version__),
        "keras": str(keras.__version__),
        "tf2onnx": str(tf2onnx.__version__),
        "onnx": str(onnx.__version__),
        "onnxruntime": str(onnxruntime.__version__),
        "numpy": str(numpy.__version__),
        "scikit-learn": str(sklearn.__version__),
    }


def kiln_version() -> str:
    try:
        return importlib.metadata.version("kiln")
    except importlib.metadata.PackageNotFoundError:
        # Running from a source tree that was never installed.
        return "unknown"


def device_name() -> str:
    """Return "CPU", or the name TensorFlow reports for the first GPU it trains on."""
    import_keras()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return str(details.get("device_name", gpus[0].name))
