"""The training spec: what a client sends, validated once at the door.

The API validates with it and the worker trusts what was validated, so it never imports
TensorFlow or any other part of training (an import contract holds it to that). Its
modules: the names a spec may use (vocabulary), layers, optimizers, fit options, the
spec itself (model), the shape every layer produces (shapes), and whether a spec can
train on a dataset (compat).
"""

from training.spec.compat import DataInfo, check_against_data, input_shape
from training.spec.model import ModelSpec
from training.spec.shapes import count_parameters, infer_shapes

__all__ = [
    "DataInfo",
    "ModelSpec",
    "check_against_data",
    "count_parameters",
    "infer_shapes",
    "input_shape",
]
