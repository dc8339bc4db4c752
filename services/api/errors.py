"""The API's own refusals, beside the registry's and training's (core.errors kinds)."""

from __future__ import annotations

from core.errors import Invalid, NotFound, TooLarge


class UploadTooLarge(TooLarge):
    code = "upload_too_large"


class UnknownBuiltinDataset(NotFound):
    code = "unknown_builtin_dataset"


class VersionsInvalid(Invalid):
    code = "versions_invalid"
