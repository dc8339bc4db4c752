"""The key ring kept fresh in the background: lookups never read the keys themselves, a
key made or revoked takes effect within the refresh interval, and a failed reload keeps
the keys last read."""

from __future__ import annotations

import asyncio

import pytest

from core.access import Grant, KeyRing, Scope, Unauthenticated, hash_token

ALICE = "kiln_alice"


def grants(*tokens: str) -> dict[str, Grant]:
    return {
        hash_token(t): Grant(key_id=str(i), owner=t, scopes=frozenset({Scope.READ}), models=None)
        for i, t in enumerate(tokens)
    }


def test_kept_fresh_lookups_never_load_and_changes_arrive_within_the_interval() -> None:
    stored = grants(ALICE)
    loads: list[str] = []

    def load() -> dict[str, Grant]:
        loads.append("load")
        if stored is None:
            raise ConnectionError("the database is down")
        return stored

    ring = KeyRing(load, max_age_s=0.1, required=True)

    async def scenario() -> None:
        nonlocal stored
        assert ring.authenticate(f"Bearer {ALICE}") is not None  # the first read, in the lookup
        task = asyncio.create_task(ring.keep_fresh())
        await asyncio.sleep(0)
        before = len(loads)
        for _ in range(1000):
            ring.authenticate(f"Bearer {ALICE}")
        assert len(loads) == before  # lookups read nothing, however stale the last read
        stored = {}  # alice's key is revoked
        await asyncio.sleep(0.3)
        with pytest.raises(Unauthenticated):
            ring.authenticate(f"Bearer {ALICE}")
        stored = None  # the database goes away: the last keys read stay
        bob = "kiln_bob"
        await asyncio.sleep(0.3)
        with pytest.raises(Unauthenticated):
            ring.authenticate(f"Bearer {bob}")
        stored = grants(bob)
        await asyncio.sleep(0.3)
        assert ring.authenticate(f"Bearer {bob}") is not None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(loads) >= 6
