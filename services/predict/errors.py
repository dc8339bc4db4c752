"""The predictor's own refusals, in the vocabulary of core.errors.

Lookups of models, versions and aliases raise the registry's errors (registry.errors),
from the registry source and from test sources alike. Bodies are the Open Inference
Protocol's `{"error": "..."}` (docs/decisions/0004); the status comes from the one table
in services/problems.py.
"""

from __future__ import annotations

from core.errors import BadRequest, Invalid, KilnError, TooLarge


class InferRequestInvalid(BadRequest):
    """An infer or metadata request that does not fit the model or the protocol."""

    code = "infer_request_invalid"


class RowsInvalid(Invalid):
    """Rows of named features that miss, add or mistype a feature."""

    code = "rows_invalid"


class RequestTooLarge(TooLarge):
    code = "request_too_large"


class ModelLoadError(KilnError):
    """A version exists but cannot be served: a malformed signature, a graph ONNX Runtime
    refuses, a failed warm-up, or an artifact that is missing or damaged."""

    code = "model_load_failed"


class OutputNotFinite(KilnError):
    code = "output_not_finite"
