"""The API's own refusals, beside the registry's and training's (core.errors kinds)."""

from __future__ import annotations

from core.errors import ErrorKind, KilnError


class UploadTooLarge(KilnError):
    kind = ErrorKind.TOO_LARGE
    code = "upload_too_large"


class UnknownBuiltinDataset(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "unknown_builtin_dataset"


class VersionsInvalid(KilnError):
    kind = ErrorKind.INVALID
    code = "versions_invalid"


class UnsupportedUpload(KilnError):
    kind = ErrorKind.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class SearchInvalid(KilnError):
    kind = ErrorKind.INVALID
    code = "search_invalid"


class SpecOverLimit(KilnError):
    kind = ErrorKind.INVALID
    code = "spec_over_limit"


class RateLimited(KilnError):
    kind = ErrorKind.TOO_MANY_REQUESTS
    code = "rate_limited"


class TooManyActiveJobs(KilnError):
    kind = ErrorKind.TOO_MANY_REQUESTS
    code = "too_many_active_jobs"


class IdempotencyKeyReused(KilnError):
    kind = ErrorKind.CONFLICT
    code = "idempotency_key_reused"


class IdempotencyKeyInProgress(KilnError):
    kind = ErrorKind.CONFLICT
    code = "idempotency_key_in_progress"


class PredictorUnreachable(KilnError):
    kind = ErrorKind.UNAVAILABLE
    code = "predictor_unreachable"


class GateRefused(KilnError):
    kind = ErrorKind.CONFLICT
    code = "gate_refused"


class NotComparable(KilnError):
    kind = ErrorKind.CONFLICT
    code = "not_comparable"


class GateMetricUnknown(KilnError):
    kind = ErrorKind.INVALID
    code = "gate_metric_unknown"


class DriftUnavailable(KilnError):
    kind = ErrorKind.INVALID
    code = "drift_unavailable"
