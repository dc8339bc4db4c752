"""Where the predictor gets models from, kept behind a protocol so tests need no registry.

A source raises the registry's own errors (registry.errors): the constructors below give
them the predictor's wording, which names what exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from registry.errors import AliasNotFound, ModelNotFound, VersionNotFound

# A reference clients use to name "some version" of a model: (name, alias), where an
# alias of None means the newest version that is not archived.
Ref = tuple[str, str | None]


class ResolvedModel(NamedTuple):
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

    def existing(self, loaded: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which of these (name, version) are still registered: a deleted version stops
        being served (numbers are never reused, so its key would otherwise stay)."""
        ...

    def load(self, name: str, version: int) -> ResolvedModel:
        """Any version by number, archived ones included; raises `ModelNotFound` or
        `VersionNotFound`, and `ArtifactStoreUnavailable` when its file cannot be read now."""
        ...


def model_not_found(name: str, *, known: Iterable[str] | None = None) -> ModelNotFound:
    message = f"model '{name}' not found"
    if known is not None:
        names = sorted(known)
        message += f"; known models: {names}" if names else "; no models are registered"
    return ModelNotFound(message)


def version_not_found(
    name: str, version: int, *, known: Iterable[int] | None = None
) -> VersionNotFound:
    message = f"version {version} of model '{name}' not found"
    if known is not None:
        message += f"; available versions: {sorted(known)}"
    return VersionNotFound(message)


def no_servable_version(name: str) -> VersionNotFound:
    return VersionNotFound(
        f"model '{name}' has no version to serve (none registered, or all archived); "
        "ask for an archived version by number"
    )


def alias_not_found(name: str, alias: str, *, known: Iterable[str] = ()) -> AliasNotFound:
    names = sorted(known)
    return AliasNotFound(
        f"alias '{alias}' of model '{name}' not found; "
        + (f"its aliases: {names}" if names else "it has no aliases")
    )
