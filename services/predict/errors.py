"""The predictor's own refusals, in the vocabulary of core.errors.

Lookups of models, versions and aliases raise the registry's errors (registry.errors),
from the registry source and from test sources alike. Bodies are the Open Inference
Protocol's `{"error": "..."}` (docs/decisions/0004); the status comes from the one table
in services/problems.py.
"""

from __future__ import annotations

from core.errors import ErrorKind, KilnError


# An infer or metadata request that does not fit the model or the protocol.
class InferRequestInvalid(KilnError):
    kind = ErrorKind.BAD_REQUEST
    code = "infer_request_invalid"


# Rows of named features that miss, add or mistype a feature.
class RowsInvalid(KilnError):
    kind = ErrorKind.INVALID
    code = "rows_invalid"


class RequestTooLarge(KilnError):
    kind = ErrorKind.TOO_LARGE
    code = "request_too_large"


# A version exists but cannot be served: a malformed signature, a graph ONNX Runtime
# refuses, a failed warm-up, or an artifact that is missing or damaged.
class ModelLoadError(KilnError):
    kind = ErrorKind.INTERNAL
    code = "model_load_failed"


class OutputNotFinite(KilnError):
    kind = ErrorKind.INTERNAL
    code = "output_not_finite"


# More requests in flight than PREDICT_MAX_IN_FLIGHT: another replica, or later.
class Overloaded(KilnError):
    kind = ErrorKind.UNAVAILABLE
    code = "overloaded"


# A key past PREDICT_RATE_LIMIT.
class PredictRateLimited(KilnError):
    kind = ErrorKind.TOO_MANY_REQUESTS
    code = "predict_rate_limited"
