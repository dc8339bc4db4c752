"""services/api/sessions.py: requests get sessions only as many at a time as there are
slots, and one that waits too long for a slot is told to come back (503)."""

from __future__ import annotations

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from registry.db import make_sessionmaker
from registry.errors import RegistryUnavailable
from services.api.sessions import SessionGate


@pytest.mark.anyio
async def test_a_request_past_the_slots_gets_503_and_the_next_one_a_session(
    engine: Engine,
) -> None:
    gate = SessionGate(make_sessionmaker(engine), slots=1, timeout_s=0.2)
    async with gate.session() as held:
        with pytest.raises(RegistryUnavailable, match="no free database connection") as exc:
            async with gate.session():
                pass
        assert exc.value.retry_after_s is not None
        assert held.execute(text("SELECT 1")).scalar() == 1
    async with gate.session() as session:
        assert session.execute(text("SELECT 1")).scalar() == 1


@pytest.mark.anyio
async def test_waiting_requests_get_the_slot_in_turn(engine: Engine) -> None:
    gate = SessionGate(make_sessionmaker(engine), slots=2, timeout_s=5)
    at_once = most = 0

    async def request() -> None:
        nonlocal at_once, most
        async with gate.session():
            at_once += 1
            most = max(most, at_once)
            await anyio.sleep(0.01)
            at_once -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(request)
    assert most == 2
