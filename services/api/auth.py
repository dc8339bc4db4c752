"""The API's side of API keys: every route declares the scope it needs with `needs`, and
`caller` checks the bearer token, the scope, the model a path names, and that a browser
on another site did not send a state-changing request (docs/decisions/0017)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes

from core.access import CrossSiteRequest, Grant, KeyRing, Scope, authorize, is_cross_site

# Declares the scheme in the OpenAPI document (each operation lists its scope); the
# header itself is read and checked by `caller`, which words its own errors.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key: `Authorization: Bearer kiln_…` (`kiln keys create`).",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request: a key's grant, or None when Kiln runs open and no key came."""

    grant: Grant | None

    @property
    def owner(self) -> str | None:
        return None if self.grant is None else self.grant.owner

    @property
    def actor(self) -> str:
        """The name history rows record."""
        return self.owner or "anonymous"

    def require(self, scope: Scope, *, model: str | None = None) -> None:
        authorize(self.grant, scope, model=model)

    def may_act_for(self, owner: str | None) -> bool:
        """Whether this caller may change what ``owner`` made (a job): its owner, an
        admin, or anyone when Kiln runs open."""
        if self.grant is None:
            return True
        return self.grant.allows(Scope.ADMIN) or self.grant.owner == owner


async def caller(
    request: Request,
    security: SecurityScopes,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    # Async: a lookup is a dict read, not worth a hop to the thread pool (where every sync
    # dependency runs). The keys are reloaded in the background (KeyRing.keep_fresh, in
    # the lifespan); only the first read, before any, goes to a thread here.
    if is_cross_site(
        request.method,
        origin=request.headers.get("origin"),
        fetch_site=request.headers.get("sec-fetch-site"),
        host=request.headers.get("host"),
    ):
        raise CrossSiteRequest(
            "a browser request from another site may not change anything here "
            "(its Origin or Sec-Fetch-Site says so); call the API from its own origin or "
            "from a client that is not a browser"
        )
    keys: KeyRing = request.app.state.keys
    authorization = request.headers.get("authorization")
    if authorization is not None and keys.stale:
        await anyio.to_thread.run_sync(keys.reload_if_stale)
    who = Caller(keys.authenticate(authorization))
    model = request.path_params.get("name")
    for scope in security.scopes:
        who.require(Scope(scope), model=model)
    return who


def needs(scope: Scope) -> Any:
    """The dependency a route declares: `dependencies=[needs(Scope.READ)]`, or a parameter
    `who: Annotated[Caller, needs(Scope.TRAIN)]` where the route uses the caller."""
    return Security(caller, scopes=[scope.value])


ReadCaller = Annotated[Caller, needs(Scope.READ)]
TrainCaller = Annotated[Caller, needs(Scope.TRAIN)]
AdminCaller = Annotated[Caller, needs(Scope.ADMIN)]
