"""Training failures with a stable ``code``, so the worker can mark a job failed with a reason.

The messages are shown to the person who sent the job: they say what went wrong and what
to change. Nothing here knows about HTTP; the services map codes to statuses.
"""

from __future__ import annotations


class TrainingError(Exception):
    """A deterministic failure of a training run; retrying the same job will not help."""

    code: str = "training_failed"


class DataError(TrainingError):
    """The dataset cannot be turned into a numeric feature matrix and target."""

    code = "data_invalid"


class ParityError(TrainingError):
    """The exported ONNX model does not reproduce the Keras model's outputs."""

    code = "parity_failed"


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite: training diverged."""

    code = "non_finite_loss"


class Cancelled(TrainingError):
    """Training stopped because the job was cancelled."""

    code = "cancelled"


class FoldProcessDied(TrainingError):
    """A process that trained a fold ended without a result (killed, out of memory)."""

    code = "fold_process_died"
