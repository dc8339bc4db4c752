"""Where the predictor gets models from, kept behind a protocol so tests need no registry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# A reference clients use to name "some version" of a model: (name, alias), where an
# alias of None means the newest version that is not archived.
Ref = tuple[str, str | None]


@dataclass(frozen=True)
class ResolvedModel:
    """One registered version: its ONNX graph and the signature training wrote for it."""

    name: str
    version: int
    onnx_bytes: bytes
    signature: dict[str, Any]


class ModelSource(Protocol):
    def resolve(self, ref: Ref) -> int:
        """The version `ref` points at now; raises `ModelNotFound`, `VersionNotFound`
        (a model without a servable version) or `AliasNotFound`."""
        ...

    def resolve_many(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        """The versions of many refs at once (the alias watcher's poll); refs that no
        longer resolve are left out."""
        ...

    def load(self, name: str, version: int) -> ResolvedModel:
        """Any version by number, archived ones included; raises `ModelNotFound` or
        `VersionNotFound`."""
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


class NoServableVersion(LookupError):
    code = "version_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"model '{name}' has no version to serve (none registered, or all archived); "
            "ask for an archived version by number"
        )


class AliasNotFound(LookupError):
    code = "alias_not_found"

    def __init__(self, name: str, alias: str, *, known: Iterable[str] = ()) -> None:
        names = sorted(known)
        super().__init__(
            f"alias '{alias}' of model '{name}' not found; "
            + (f"its aliases: {names}" if names else "it has no aliases")
        )


class SourceUnavailable(Exception):
    """The model's files cannot be reached right now (the artifact store is down)."""
