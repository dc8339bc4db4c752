"""Registry errors: each has a stable `code` that services map to an HTTP status."""

from __future__ import annotations


class RegistryError(Exception):
    code = "registry_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(RegistryError):
    code = "not_found"


class DatasetNotFound(NotFound):
    code = "dataset_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class VersionNotFound(NotFound):
    code = "version_not_found"


class ArtifactMissing(NotFound):
    code = "artifact_missing"


class ArtifactCorrupt(RegistryError):
    code = "artifact_corrupt"


class Conflict(RegistryError):
    code = "conflict"


class InvalidState(RegistryError):
    code = "invalid_state"


class AliasNotFound(NotFound):
    code = "alias_not_found"


class AliasInvalid(RegistryError):
    code = "alias_invalid"


class NoPreviousVersion(Conflict):
    code = "no_previous_version"


class VersionInUse(Conflict):
    code = "version_in_use"


class TagInvalid(RegistryError):
    code = "tag_invalid"


class MetricUnknown(RegistryError):
    code = "metric_unknown"


class ArtifactStoreUnavailable(RegistryError):
    code = "artifact_store_unavailable"
