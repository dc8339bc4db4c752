"""registry/db.py: engines and sessions that behave alike on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from registry.models import RegisteredModel


def test_a_savepoint_first_in_a_transaction_is_rolled_back_with_it(engine: Engine) -> None:
    # On SQLite, pysqlite begins a transaction only before a write; a SAVEPOINT first
    # would open one of its own, and its RELEASE would commit what follows.
    name = f"sp-{uuid.uuid4().hex[:8]}"
    with Session(engine) as s:
        with s.begin_nested():
            s.add(RegisteredModel(name=name))
        s.rollback()
    with Session(engine) as s:
        assert (
            s.scalars(select(RegisteredModel).where(RegisteredModel.name == name)).first() is None
        )
