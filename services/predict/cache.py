"""The bounded cache of loaded models, and how refs (`name`, `name@alias`) follow the
registry."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread

from core.errors import ErrorKind, KilnError
from core.text import printable
from registry.errors import ModelNotFound, VersionNotFound
from services.predict.errors import InferRequestInvalid, ModelLoadError
from services.predict.model import Device, OnnxModel
from services.predict.source import ModelSource, Ref

log = logging.getLogger("kiln.predict")


class ModelCache:
    """Loaded models keyed by (name, version), bounded by count and bytes, LRU evicted.

    Refs (`name`, `name@alias`) resolve to a version once, on first use; afterwards a
    background task calls `refresh()` every fraction of a second with one registry query
    for all refs in use, loads and warms a new target before switching to it, and keeps
    the old version serving (and reports why) when the new one cannot load. Requests in
    flight keep the model object they resolved, so a switch never fails one.
    """

    def __init__(
        self,
        source: ModelSource,
        *,
        device: Device,
        max_loaded: int,
        max_bytes: int = 0,
        on_load: Callable[[OnnxModel, float], None] | None = None,
        on_switch_failed: Callable[[str, int, str], None] | None = None,
        configure: Callable[[OnnxModel], None] | None = None,
        failed_ttl_s: float = 5.0,
    ) -> None:
        if max_loaded < 1:
            raise ValueError(f"max_loaded must be at least 1, got {max_loaded}")
        self._source = source
        self._device: Device = device
        self._max_loaded = max_loaded
        self._max_bytes = max_bytes
        self._on_load = on_load
        self._on_switch_failed = on_switch_failed
        self._configure = configure
        self._models: OrderedDict[tuple[str, int], OnnxModel] = OrderedDict()
        self._bytes = 0
        self._refs: dict[Ref, int] = {}
        self._ref_errors: dict[Ref, tuple[int, str]] = {}
        self._loading: dict[tuple[str, int], anyio.Lock] = {}
        # Versions that failed to load, and until when that answer stands: a client
        # hammering a broken version must not rebuild its session on every request.
        self._failed: dict[tuple[str, int], tuple[float, KilnError]] = {}
        self._failed_ttl_s = failed_ttl_s
        self.hits = 0
        self.loads = 0

    def __len__(self) -> int:
        return len(self._models)

    @property
    def loaded_bytes(self) -> int:
        return self._bytes

    def loaded(self) -> list[tuple[str, int]]:
        """Keys from least to most recently used."""
        return list(self._models)

    def models(self) -> list[OnnxModel]:
        return list(self._models.values())

    def ref_error(self, ref: Ref) -> tuple[int, str] | None:
        """The version a ref moved to that could not be served, and why."""
        return self._ref_errors.get(ref)

    def lookup(self, ref: Ref, version: int | None) -> OnnxModel | None:
        """The loaded model without awaiting anything, or None; the serving fast path."""
        if version is None:
            version = self._refs.get(ref)
            if version is None:
                return None
        key = (ref[0], version)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            self.hits += 1
        return model

    async def get(self, ref: Ref, version: int | None = None) -> OnnxModel:
        """The model `ref` points at, or `version` of it; raises the registry's not-found
        errors, `ModelLoadError`, `ArtifactStoreUnavailable` or `RegistryUnavailable`."""
        model = self.lookup(ref, version)
        if model is not None:
            return model
        if version is not None:
            if ref[1] is not None:
                raise InferRequestInvalid(
                    f"ask for '{ref[0]}@{ref[1]}' or for a version of '{ref[0]}', not both"
                )
            return await self._load((ref[0], version))
        version = await anyio.to_thread.run_sync(self._source.resolve, ref)
        model = await self._load((ref[0], version))
        # Just read from the registry, so at least as fresh as what the refresher saw.
        self._refs[ref] = version
        return model

    async def preload(self, refs: Sequence[tuple[Ref, int | None]]) -> None:
        for ref, version in refs:
            await self.get(ref, version)

    async def refresh(self) -> None:
        """Follow every ref in use to where the registry points it now, and drop loaded
        versions that were deleted."""
        await self._drop_deleted()
        refs = list(self._refs)
        if not refs:
            return
        current = await anyio.to_thread.run_sync(self._source.resolve_many, refs)
        for ref in refs:
            version = current.get(ref)
            if version is None:
                # The alias was deleted or every version archived: forget it, so the next
                # request asks the registry and gets its 404.
                self._refs.pop(ref, None)
                self._ref_errors.pop(ref, None)
                continue
            if version == self._refs.get(ref):
                self._ref_errors.pop(ref, None)
                continue
            failed = self._ref_errors.get(ref)
            if failed is not None and failed[0] == version:
                continue  # already tried and reported; wait for the next move
            try:
                await self._load((ref[0], version))
            except KilnError as exc:
                if exc.kind == ErrorKind.UNAVAILABLE:
                    raise  # not the version's fault: the next refresh tries it again
                self._ref_errors[ref] = (version, exc.message)
                label = ref[0] + (f"@{ref[1]}" if ref[1] else "")
                log.error(
                    "%s moved to version %d, which cannot be served; still serving version %d: %s",
                    printable(label),
                    version,
                    self._refs.get(ref, 0),
                    exc.message,
                )
                if self._on_switch_failed is not None:
                    self._on_switch_failed(label, version, exc.message)
                continue
            previous = self._refs.get(ref)
            self._refs[ref] = version
            self._ref_errors.pop(ref, None)
            log.info("%s now serves version %d (was %s)", printable(ref), version, previous)

    async def _drop_deleted(self) -> None:
        loaded = list(self._models)
        if not loaded:
            return
        present = await anyio.to_thread.run_sync(self._source.existing, loaded)
        for key in loaded:
            if key not in present:
                dropped = self._models.pop(key, None)
                if dropped is not None:
                    self._bytes -= dropped.size_bytes
                    log.info(
                        "model '%s' version %d was deleted; no longer served",
                        printable(key[0]),
                        key[1],
                    )

    async def _load(self, key: tuple[str, int]) -> OnnxModel:
        # One load per key even when many requests for a cold model arrive together.
        lock = self._loading.setdefault(key, anyio.Lock())
        try:
            async with lock:
                model = self._models.get(key)
                if model is not None:
                    return model
                failed = self._failed.get(key)
                if failed is not None and failed[0] > time.monotonic():
                    raise failed[1]
                started = time.perf_counter()
                try:
                    model = await anyio.to_thread.run_sync(self._load_blocking, key)
                except KilnError as exc:
                    # A broken version is remembered for a while. An unreachable database
                    # or store is not: the first request after it is back loads the model.
                    if exc.kind == ErrorKind.INTERNAL:
                        self._failed[key] = (time.monotonic() + self._failed_ttl_s, exc)
                    raise
                self._failed.pop(key, None)
                if self._configure is not None:
                    self._configure(model)
                self._models[key] = model
                self._bytes += model.size_bytes
                self.loads += 1
                self._evict()
                if self._on_load is not None:
                    self._on_load(model, time.perf_counter() - started)
                return model
        finally:
            self._loading.pop(key, None)

    def _evict(self) -> None:
        # The newest model always stays, even alone over the byte bound: refusing to
        # serve it would be worse than the memory it takes.
        while len(self._models) > 1 and (
            len(self._models) > self._max_loaded
            or (self._max_bytes and self._bytes > self._max_bytes)
        ):
            _, evicted = self._models.popitem(last=False)
            self._bytes -= evicted.size_bytes

    def _load_blocking(self, key: tuple[str, int]) -> OnnxModel:
        name, version = key
        where = f"model '{name}' version {version}"
        try:
            resolved = self._source.load(name, version)
        except (ModelNotFound, VersionNotFound):
            raise
        except KilnError as exc:
            if exc.kind != ErrorKind.UNAVAILABLE:
                raise ModelLoadError(f"{where} cannot be read: {exc}") from exc
            # Transient (the artifact store, the registry database): the client may retry,
            # and a load balancer may try another replica.
            raise type(exc)(
                f"{where} cannot be read now: {exc}", retry_after_s=exc.retry_after_s
            ) from exc
        except Exception as exc:  # a missing or corrupt artifact: the server's fault
            raise ModelLoadError(f"{where} cannot be read: {exc}") from exc
        return OnnxModel.load(resolved, device=self._device)
