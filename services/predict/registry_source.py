"""The predictor's view of the registry: version numbers, signatures and ONNX bytes.

The ONNX file is read from the artifact store and checked against its sha256, so a
corrupted artifact is refused, never served.
"""

from __future__ import annotations

from sqlalchemy import select

from registry import errors, versions
from registry.artifacts import make_artifact_store
from registry.db import make_engine, make_sessionmaker
from registry.models import ModelVersion, RegisteredModel
from services.predict.source import ModelNotFound, ResolvedModel, VersionNotFound
from services.settings import PredictSettings


class RegistrySource:
    def __init__(self, settings: PredictSettings) -> None:
        self._engine = make_engine(settings.database_url)
        self._sm = make_sessionmaker(self._engine)
        self._store = make_artifact_store(settings)

    def _known_models(self) -> list[str]:
        with self._sm() as session:
            return list(session.scalars(select(RegisteredModel.name)).all())

    def latest_version(self, name: str) -> int:
        with self._sm() as session:
            try:
                model = versions.get_model(session, name=name)
            except errors.ModelNotFound:
                raise ModelNotFound(name, known=self._known_models()) from None
            number = versions.latest_version_number(session, model_id=model.id)
        if number is None:
            raise VersionNotFound(name, 1, known=[])
        return number

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
        return ResolvedModel(
            name=name, version=version, onnx_bytes=self._store.get(sha256), signature=signature
        )

    def close(self) -> None:
        self._engine.dispose()
