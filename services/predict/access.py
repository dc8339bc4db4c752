"""API keys on every predictor path: a request hook (services/predict/serving.py) that
runs before the body is read, on the infer fast path and on FastAPI's routes alike.

The key ring is reloaded in the background (`app._refresh_keys_forever`), never on a
request: a lookup is a sha256 and a dict read. Health, metrics, server metadata and the
OpenAPI pages stay open, for probes and scrapers (docs/decisions/0017).
"""

from __future__ import annotations

import time

from fastapi import Security
from fastapi.security import HTTPBearer
from limits import parse, storage, strategies

from core.access import KeyRing, Scope
from services import docs
from services.predict.errors import PredictRateLimited
from services.predict.request import RequestHead, RequestHook

# Exact paths, so that the check costs an infer request one set lookup; the docs' pages
# and each of their files are listed in services/docs.py.
PUBLIC = frozenset(
    {"/v2", "/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json"} | docs.PUBLIC_PATHS
)
_AUTHORIZATION = b"authorization"

# Declares the scheme in the OpenAPI document; the hook does the checking.
documented = Security(
    HTTPBearer(
        auto_error=False,
        scheme_name="apiKey",
        description="An API key with the `predict` scope: `Authorization: Bearer kiln_…`.",
    ),
    scopes=[Scope.PREDICT.value],
)


def model_of(path: str) -> str | None:
    """The model name a path names (`/v2/models/{name}…`, `/predict/{name}…`), alias cut."""
    if path.startswith("/v2/models/"):
        rest = path[11:]
    elif path.startswith("/predict/"):
        rest = path[9:]
    else:
        return None
    return rest.partition("/")[0].partition("@")[0] or None


def key_check(keys: KeyRing, *, rate: str = "") -> RequestHook:
    """Refuse a request without a valid key with `predict` for its model (401/403), and
    one past the key's ``rate`` ("1000/second"; counted per process, in a fixed window,
    the cheapest of `limits`' strategies) with 429."""
    limit = parse(rate) if rate else None
    limiter = strategies.FixedWindowRateLimiter(storage.MemoryStorage()) if limit else None

    def check(head: RequestHead) -> None:
        if head.path in PUBLIC:
            return
        header = head.header(_AUTHORIZATION)
        grant = keys.authenticate(None if header is None else header.decode("latin-1"))
        if grant is None:
            return
        grant.require(Scope.PREDICT, model=model_of(head.path))
        if limiter is not None and limit is not None and not limiter.hit(limit, grant.key_id):
            reset, _ = limiter.get_window_stats(limit, grant.key_id)
            raise PredictRateLimited(
                f"the key of {grant.owner!r} sent more than {limit} requests "
                "(PREDICT_RATE_LIMIT, per predictor process)",
                retry_after_s=max(1.0, reset - time.time()),
            )

    return check
