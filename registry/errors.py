"""Registry errors, in the vocabulary of core.errors: each a kind and a stable code."""

from __future__ import annotations

from core.errors import ErrorKind, KilnError


class DatasetNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "dataset_not_found"


class JobNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "job_not_found"


class SearchNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "search_not_found"


class KeyNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "key_not_found"


class ModelNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "model_not_found"


class VersionNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "version_not_found"


class AliasNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "alias_not_found"


class TagNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "tag_not_found"


class ArtifactMissing(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "artifact_missing"


# Stored bytes that no longer hash to their name: never served.
class ArtifactCorrupt(KilnError):
    kind = ErrorKind.INTERNAL
    code = "artifact_corrupt"


class ArtifactStoreUnavailable(KilnError):
    kind = ErrorKind.UNAVAILABLE
    code = "artifact_store_unavailable"


class InvalidState(KilnError):
    kind = ErrorKind.CONFLICT
    code = "invalid_state"


class NoPreviousVersion(KilnError):
    kind = ErrorKind.CONFLICT
    code = "no_previous_version"


class VersionInUse(KilnError):
    kind = ErrorKind.CONFLICT
    code = "version_in_use"


class AliasContention(KilnError):
    kind = ErrorKind.CONFLICT
    code = "alias_contention"


class AliasInvalid(KilnError):
    kind = ErrorKind.INVALID
    code = "alias_invalid"


class TagInvalid(KilnError):
    kind = ErrorKind.INVALID
    code = "tag_invalid"


class MetricUnknown(KilnError):
    kind = ErrorKind.INVALID
    code = "metric_unknown"


# The registry database cannot be reached or dropped the connection; the same request
# may succeed once it is back (registry.db.unavailable makes these from SQLAlchemy's).
class RegistryUnavailable(KilnError):
    kind = ErrorKind.UNAVAILABLE
    code = "registry_unavailable"


class ReportNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "report_not_found"


class ReportExists(KilnError):
    kind = ErrorKind.CONFLICT
    code = "report_exists"


class ProfileNotFound(KilnError):
    kind = ErrorKind.NOT_FOUND
    code = "profile_not_found"
