"""Errors of data, specs and training runs, in the vocabulary of core.errors.

The messages are shown to the person who sent the data or the job: they say what went
wrong and what to change. The codes of the data errors are the API's (a refused upload
carries them in its problem body); the worker records the same code in a failed job's
reason.
"""

from __future__ import annotations

from core.errors import Conflict, Invalid, KilnError, Unavailable


class DataError(Invalid):
    """The data cannot be turned into numeric features and a target."""

    code = "data_invalid"


class EmptyData(DataError):
    code = "upload_empty"


class NotCsv(DataError):
    code = "upload_not_csv"


class TargetMissing(DataError):
    code = "target_missing"


class MissingValues(DataError):
    code = "missing_values"


class NonNumericFeatures(DataError):
    code = "non_numeric_features"


class NotNpz(DataError):
    code = "upload_not_npz"


class ImagesInvalid(DataError):
    code = "images_invalid"


class SpecDataMismatch(Invalid):
    """The spec is valid on its own but cannot train on the chosen data."""

    code = "spec_data_mismatch"


class NonFiniteLoss(Invalid):
    """The loss became NaN or infinite: training diverged (the spec's learning rate, or the
    data's extreme values)."""

    code = "non_finite_loss"


class ParityError(KilnError):
    """The exported ONNX model does not reproduce the Keras model's outputs."""

    code = "parity_failed"


class Cancelled(Conflict):
    """Training stopped because the job was cancelled or taken back."""

    code = "cancelled"


class FoldProcessDied(Unavailable):
    """A process that trained a fold ended without a result (killed, out of memory)."""

    code = "fold_process_died"
