"""Who may do what: API key scopes, the grant a key carries, and the key ring both
services check a bearer token against.

A key is a random token shown once; the registry stores its sha256 (registry.keys).
Hashing with a plain, fast digest is enough for tokens of 256 random bits: there is no
password to guess, and every request must be checked in microseconds, the predictor's
fast path included (docs/decisions/0017).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from core.errors import ErrorKind, KilnError

log = logging.getLogger("kiln.access")

TOKEN_PREFIX = "kiln_"


class Scope(StrEnum):
    READ = "read"  # every GET of the API
    PREDICT = "predict"  # the prediction service
    TRAIN = "train"  # upload datasets, submit, retrain and cancel one's own jobs
    ADMIN = "admin"  # everything: the registry's lifecycle, others' jobs, the keys


class Unauthenticated(KilnError):
    kind = ErrorKind.UNAUTHENTICATED
    code = "unauthenticated"


class ScopeMissing(KilnError):
    kind = ErrorKind.FORBIDDEN
    code = "scope_missing"


class ModelNotAllowed(KilnError):
    kind = ErrorKind.FORBIDDEN
    code = "model_not_allowed"


class CrossSiteRequest(KilnError):
    kind = ErrorKind.FORBIDDEN
    code = "cross_site_request"


class KeysUnavailable(KilnError):
    kind = ErrorKind.UNAVAILABLE
    code = "keys_unavailable"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Grant:
    """What one key may do. ``models`` None: every model."""

    key_id: str
    owner: str
    scopes: frozenset[Scope]
    models: frozenset[str] | None = None

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def allows_model(self, name: str) -> bool:
        return self.models is None or name in self.models

    def require(self, scope: Scope, *, model: str | None = None) -> None:
        if not self.allows(scope):
            have = ", ".join(sorted(self.scopes)) or "none"
            raise ScopeMissing(
                f"this needs an API key with the '{scope}' scope; the key of {self.owner!r} "
                f"has: {have}"
            )
        if model is not None and not self.allows_model(model):
            raise ModelNotAllowed(
                f"the key of {self.owner!r} is limited to models {sorted(self.models or ())}; "
                f"it may not use model {model!r}"
            )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "the Authorization header must be 'Bearer <API key>' "
            f"(keys start with {TOKEN_PREFIX!r})"
        )
    return token.strip()


class KeyRing:
    """The active keys' grants by token hash, reloaded from ``load`` at most every
    ``max_age_s``: a key made or revoked takes effect within that time, and a lookup is a
    dict read. When a reload fails (the database is down), the last grants stay in use;
    before the first load succeeds, requests are answered 503.

    ``required`` False (Kiln running open): a request without a key is let through as
    anonymous; one with a key is still checked, so owners are recorded where known.
    """

    def __init__(
        self, load: Callable[[], Mapping[str, Grant]], *, max_age_s: float, required: bool
    ) -> None:
        self._load = load
        self.max_age_s = max_age_s
        self.required = required
        self._grants: Mapping[str, Grant] | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._failing = False
        self._kept_fresh = False

    def refresh(self) -> None:
        try:
            grants = self._load()
        except Exception as exc:
            if not self._failing:
                log.warning("reading the API keys failed; using the last ones read: %s", exc)
            self._failing = True
            raise
        if self._failing:
            log.warning("reading the API keys works again")
        self._failing = False
        self._grants = grants
        self._loaded_at = time.monotonic()

    @property
    def stale(self) -> bool:
        """Whether the next lookup reloads first (a caller in an event loop does that
        reload in a thread: `reload_if_stale`). Once `keep_fresh` runs, only before the
        first load."""
        if self._grants is None:
            return True
        return not self._kept_fresh and time.monotonic() - self._loaded_at >= self.max_age_s

    async def keep_fresh(self) -> None:
        """Reload every ``max_age_s`` in the background (a task of a service's lifespan)
        instead of in a lookup: lookups then never wait for the database, and the requests
        that arrive while the keys are read do not queue behind the read. A failed reload
        keeps the keys last read (`refresh` logs it once)."""
        self._kept_fresh = True
        try:
            while True:
                await asyncio.sleep(self.max_age_s)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self.refresh)
        finally:
            self._kept_fresh = False

    def reload_if_stale(self) -> Mapping[str, Grant]:
        grants = self._grants
        if grants is not None and not self.stale:
            return grants
        with self._lock:
            if self._grants is not grants and self._grants is not None:
                return self._grants  # another thread reloaded while this one waited
            try:
                self.refresh()
            except Exception as exc:
                if self._grants is None:
                    raise KeysUnavailable(
                        "the API keys cannot be read now (the registry is unreachable)",
                        retry_after_s=2,
                    ) from exc
                self._loaded_at = time.monotonic()  # retried after another max_age_s
            assert self._grants is not None
            return self._grants

    def authenticate(self, authorization: str | None) -> Grant | None:
        """The grant of the request's key; None for an anonymous request Kiln lets in."""
        token = bearer_token(authorization)
        if token is None:
            if self.required:
                raise Unauthenticated(
                    "this Kiln requires an API key: send 'Authorization: Bearer <key>' "
                    "(make one with `kiln keys create`, the first with `kiln keys bootstrap`)"
                )
            return None
        grant = self.reload_if_stale().get(hash_token(token))
        if grant is None:
            raise Unauthenticated("the API key is not known or was revoked")
        return grant


def authorize(grant: Grant | None, scope: Scope, *, model: str | None = None) -> None:
    """Refuse (403) a key without ``scope`` or not allowed ``model``; anonymous requests
    reach here only when Kiln runs open."""
    if grant is not None:
        grant.require(scope, model=model)


def is_cross_site(
    method: str, *, origin: str | None, fetch_site: str | None, host: str | None
) -> bool:
    """A state-changing request a browser sent from another site (a form or a script
    on any web page): `Sec-Fetch-Site: cross-site`, or an `Origin` whose host is not the
    request's. Clients that are not browsers send neither header."""
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    if origin is None:
        return False
    _, _, origin_host = origin.partition("://")
    return origin == "null" or origin_host.rstrip("/") != (host or "")
