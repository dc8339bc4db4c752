"""The predictor's view of the registry: version numbers, aliases, signatures and ONNX bytes.

Reads only, with its own small selects (the write side of aliases lives in the API). The
ONNX file is read from the artifact store and checked against its sha256, so a
corrupted artifact is refused, never served.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.access import KeyRing
from registry import keys
from registry.artifacts import make_artifact_store
from registry.db import make_engine, make_sessionmaker, unavailable
from registry.models import Alias, ModelVersion, RegisteredModel
from services.predict.source import (
    Ref,
    ResolvedModel,
    alias_not_found,
    model_not_found,
    no_servable_version,
    version_not_found,
)
from services.settings import PredictSettings

# The newest version a client gets without naming one skips archived versions.
_NEWEST = (
    select(RegisteredModel.name, func.max(ModelVersion.version))
    .join(ModelVersion, ModelVersion.registered_model_id == RegisteredModel.id)
    .where(ModelVersion.archived_at.is_(None))
    .group_by(RegisteredModel.name)
)
_ALIASES = (
    select(RegisteredModel.name, Alias.name, ModelVersion.version)
    .join(Alias, Alias.registered_model_id == RegisteredModel.id)
    .join(ModelVersion, ModelVersion.id == Alias.model_version_id)
)


class RegistrySource:
    def __init__(self, settings: PredictSettings) -> None:
        self._engine = make_engine(settings.database_url)
        self._sm = make_sessionmaker(self._engine)
        self._store = make_artifact_store(settings)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session whose lost or refused connections raise the registry's own
        `RegistryUnavailable` (a 503 with Retry-After), which the cache does not remember
        as a broken version: the first request after the database is back loads it."""
        try:
            with self._sm() as session:
                yield session
        except SQLAlchemyError as exc:
            domain = unavailable(exc)
            if domain is None:
                raise
            raise domain from exc

    def _known_models(self) -> list[str]:
        with self._session() as session:
            return list(session.scalars(select(RegisteredModel.name)).all())

    def resolve(self, ref: Ref) -> int:
        name, alias = ref
        found = self.resolve_many([ref])
        if ref in found:
            return found[ref]
        with self._session() as session:
            model = session.scalars(
                select(RegisteredModel).where(RegisteredModel.name == name)
            ).first()
            if model is None:
                raise model_not_found(name, known=self._known_models())
            if alias is None:
                raise no_servable_version(name)
            known = session.scalars(
                select(Alias.name).where(Alias.registered_model_id == model.id)
            ).all()
        raise alias_not_found(name, alias, known=known)

    def resolve_many(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        newest = {name for name, alias in refs if alias is None}
        aliased = {name for name, alias in refs if alias is not None}
        wanted = set(refs)
        found: dict[Ref, int] = {}
        with self._session() as session:
            if newest:
                for name, number in session.execute(
                    _NEWEST.where(RegisteredModel.name.in_(newest))
                ):
                    found[(name, None)] = number
            if aliased:
                for name, alias, number in session.execute(
                    _ALIASES.where(RegisteredModel.name.in_(aliased))
                ):
                    if (name, alias) in wanted:
                        found[(name, alias)] = number
        return found

    def existing(self, loaded: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        names = {name for name, _ in loaded}
        with self._session() as session:
            rows = session.execute(
                select(RegisteredModel.name, ModelVersion.version)
                .join(ModelVersion, ModelVersion.registered_model_id == RegisteredModel.id)
                .where(RegisteredModel.name.in_(names))
            )
            return {(name, number) for name, number in rows} & set(loaded)

    def load(self, name: str, version: int) -> ResolvedModel:
        with self._session() as session:
            found = session.execute(
                select(ModelVersion.onnx_sha256, ModelVersion.signature)
                .join(RegisteredModel, RegisteredModel.id == ModelVersion.registered_model_id)
                .where(RegisteredModel.name == name, ModelVersion.version == version)
            ).first()
            if found is None:
                numbers = session.scalars(
                    select(ModelVersion.version)
                    .join(RegisteredModel, RegisteredModel.id == ModelVersion.registered_model_id)
                    .where(RegisteredModel.name == name)
                ).all()
        if found is None:
            if numbers or name in self._known_models():
                raise version_not_found(name, version, known=numbers)
            raise model_not_found(name, known=self._known_models())
        sha256, signature = found
        # The store's errors go up as they are: unreachable (503), missing or corrupt.
        onnx_bytes = self._store.get(sha256)
        return ResolvedModel(name=name, version=version, onnx_bytes=onnx_bytes, signature=signature)

    def close(self) -> None:
        self._engine.dispose()


def registry_keys(settings: PredictSettings) -> KeyRing:
    """The registry's API keys, reloaded by the predictor's background task only (a
    lookup never waits for the database: `KeyRing.keep_fresh`)."""
    sm = make_sessionmaker(make_engine(settings.database_url))
    return keys.key_ring(sm, settings)
