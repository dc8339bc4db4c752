"""Registry errors, in the vocabulary of core.errors: each a kind and a stable code."""

from __future__ import annotations

from core.errors import Conflict, Invalid, KilnError, NotFound, Unavailable


class DatasetNotFound(NotFound):
    code = "dataset_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class AliasNotFound(NotFound):
    code = "alias_not_found"


class TagNotFound(NotFound):
    code = "tag_not_found"


class ArtifactMissing(NotFound):
    code = "artifact_missing"


class ArtifactCorrupt(KilnError):
    """Stored bytes that no longer hash to their name: never served."""

    code = "artifact_corrupt"


class ArtifactStoreUnavailable(Unavailable):
    code = "artifact_store_unavailable"


class InvalidState(Conflict):
    code = "invalid_state"


class NoPreviousVersion(Conflict):
    code = "no_previous_version"


class VersionInUse(Conflict):
    code = "version_in_use"


class VersionNumberContention(Conflict):
    code = "version_number_contention"


class AliasContention(Conflict):
    code = "alias_contention"


class AliasInvalid(Invalid):
    code = "alias_invalid"


class TagInvalid(Invalid):
    code = "tag_invalid"


class MetricUnknown(Invalid):
    code = "metric_unknown"
