"""Errors of data, specs and training runs, in the vocabulary of core.errors.

The messages are shown to the person who sent the data or the job: they say what went
wrong and what to change. The codes of the data errors are the API's (a refused upload
carries them in its problem body); the worker records the same code in a failed job's
reason.
"""

from __future__ import annotations

from core.errors import ErrorKind, KilnError


# The data cannot be turned into numeric features and a target.
class DataError(KilnError):
    kind = ErrorKind.INVALID
    code = "data_invalid"


class EmptyData(DataError):
    kind = ErrorKind.INVALID
    code = "upload_empty"


class NotCsv(DataError):
    kind = ErrorKind.INVALID
    code = "upload_not_csv"


class TargetMissing(DataError):
    kind = ErrorKind.INVALID
    code = "target_missing"


class MissingValues(DataError):
    kind = ErrorKind.INVALID
    code = "missing_values"


class NonNumericFeatures(DataError):
    kind = ErrorKind.INVALID
    code = "non_numeric_features"


class NotNpz(DataError):
    kind = ErrorKind.INVALID
    code = "upload_not_npz"


class ImagesInvalid(DataError):
    kind = ErrorKind.INVALID
    code = "images_invalid"


# The arrays an NPZ declares would take more memory than the upload limit allows.
class DataTooLarge(DataError):
    kind = ErrorKind.TOO_LARGE
    code = "data_too_large"


# The spec is valid on its own but cannot train on the chosen data.
class SpecDataMismatch(KilnError):
    kind = ErrorKind.INVALID
    code = "spec_data_mismatch"


# The loss became NaN or infinite: training diverged (the spec's learning rate, or the
# data's extreme values).
class NonFiniteLoss(KilnError):
    kind = ErrorKind.INVALID
    code = "non_finite_loss"


# The exported ONNX model does not reproduce the Keras model's outputs.
class ParityError(KilnError):
    kind = ErrorKind.INTERNAL
    code = "parity_failed"


# Training stopped because the job was cancelled or taken back.
class Cancelled(KilnError):
    kind = ErrorKind.CONFLICT
    code = "cancelled"


# A process that trained a fold ended without a result (killed, out of memory).
class FoldProcessDied(KilnError):
    kind = ErrorKind.UNAVAILABLE
    code = "fold_process_died"
