"""Where the predictor gets models from, kept behind a protocol so tests need no registry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ResolvedModel:
    """One registered version: its ONNX graph and the signature training wrote for it."""

    name: str
    version: int
    onnx_bytes: bytes
    signature: dict[str, Any]


class ModelSource(Protocol):
    def latest_version(self, name: str) -> int:
        """The newest version of `name`; raises `ModelNotFound`."""
        ...

    def load(self, name: str, version: int) -> ResolvedModel:
        """Raises `ModelNotFound` or `VersionNotFound`."""
        ...


class ModelNotFound(LookupError):
    code = "model_not_found"

    def __init__(self, name: str, *, known: Iterable[str] | None = None) -> None:
        self.name = name
        message = f"model '{name}' not found"
        if known is not None:
            names = sorted(known)
            message += f"; known models: {names}" if names else "; no models are registered"
        super().__init__(message)


class VersionNotFound(LookupError):
    code = "version_not_found"

    def __init__(self, name: str, version: int, *, known: Iterable[int] | None = None) -> None:
        self.name = name
        self.version = version
        message = f"version {version} of model '{name}' not found"
        if known is not None:
            message += f"; available versions: {sorted(known)}"
        super().__init__(message)
