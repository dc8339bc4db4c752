"""The predictor's view of the registry: version numbers, aliases, signatures and ONNX bytes.

Reads only, with its own small selects (the write side of aliases lives in the API). The
ONNX file is read from the artifact store and checked against its sha256, so a
corrupted artifact is refused, never served.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from registry import errors, versions
from registry.artifacts import make_artifact_store
from registry.db import make_engine, make_sessionmaker
from registry.models import Alias, ModelVersion, RegisteredModel
from services.predict.source import (
    AliasNotFound,
    ModelNotFound,
    NoServableVersion,
    Ref,
    ResolvedModel,
    SourceUnavailable,
    VersionNotFound,
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

    def _known_models(self) -> list[str]:
        with self._sm() as session:
            return list(session.scalars(select(RegisteredModel.name)).all())

    def resolve(self, ref: Ref) -> int:
        name, alias = ref
        found = self.resolve_many([ref])
        if ref in found:
            return found[ref]
        with self._sm() as session:
            model = session.scalars(
                select(RegisteredModel).where(RegisteredModel.name == name)
            ).first()
            if model is None:
                raise ModelNotFound(name, known=self._known_models())
            if alias is None:
                raise NoServableVersion(name)
            known = session.scalars(
                select(Alias.name).where(Alias.registered_model_id == model.id)
            ).all()
        raise AliasNotFound(name, alias, known=known)

    def resolve_many(self, refs: Sequence[Ref]) -> dict[Ref, int]:
        newest = {name for name, alias in refs if alias is None}
        aliased = {name for name, alias in refs if alias is not None}
        wanted = set(refs)
        found: dict[Ref, int] = {}
        with self._sm() as session:
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

    def load(self, name: str, version: int) -> ResolvedModel:
        with self._sm() as session:
            try:
                mv: ModelVersion = versions.get_version(session, model_name=name, version=version)
            except errors.ModelNotFound:
                raise ModelNotFound(name, known=self._known_models()) from None
            except errors.VersionNotFound:
                model = versions.get_model(session, name=name)
                raise VersionNotFound(
                    name, version, known=[v.version for v in model.versions]
                ) from None
            sha256, signature = mv.onnx_sha256, mv.signature
        try:
            onnx_bytes = self._store.get(sha256)
        except errors.ArtifactStoreUnavailable as exc:
            raise SourceUnavailable(str(exc)) from exc
        return ResolvedModel(name=name, version=version, onnx_bytes=onnx_bytes, signature=signature)

    def close(self) -> None:
        self._engine.dispose()
