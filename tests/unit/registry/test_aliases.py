"""Aliases: moves, history, rollback, and two clients racing on the same alias with their
own connections, on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from registry import aliases, versions, views
from registry.errors import (
    AliasInvalid,
    AliasNotFound,
    NoPreviousVersion,
    VersionInUse,
    VersionNotFound,
)
from registry.models import Alias, AliasEvent, RegisteredModel
from tests.factories import make_version


def three_versions(session: Session, name: str = "toy") -> list[int]:
    return [make_version(session, model_name=name).version for _ in range(3)]


def test_set_move_and_history(session: Session) -> None:
    v1, v2, _ = three_versions(session)
    created = aliases.set_alias(
        session, model_name="toy", alias="production", version=v1, actor="ana", reason="first"
    )
    moved = aliases.set_alias(session, model_name="toy", alias="production", version=v2, actor="bo")
    assert (created.from_version, created.to_version, created.actor, created.reason) == (
        None,
        v1,
        "ana",
        "first",
    )
    assert (moved.from_version, moved.to_version, moved.actor) == (v1, v2, "bo")
    assert moved.at >= created.at
    assert aliases.get_alias(session, model_name="toy", alias="production").version == v2
    history = aliases.alias_history(session, model_name="toy")
    assert [(e.from_version, e.to_version) for e in history] == [(v1, v2), (None, v1)]
    pointed = views.version(session, model_name="toy", version=v2)
    assert [a.name for a in pointed.aliases] == ["production"]
    assert [a.name for a in views.version(session, model_name="toy", version=v1).aliases] == []


def test_rollback_to_previous_and_to_a_named_version(session: Session) -> None:
    v1, v2, v3 = three_versions(session)
    aliases.set_alias(session, model_name="toy", alias="production", version=v1)
    aliases.set_alias(session, model_name="toy", alias="production", version=v2)
    back = aliases.rollback(session, model_name="toy", alias="production", actor="ops")
    assert (back.from_version, back.to_version, back.actor) == (v2, v1, "ops")
    assert back.reason == f"rollback to version {v1}"
    assert aliases.get_alias(session, model_name="toy", alias="production").version == v1
    # `previous` after a rollback undoes the rollback: the alias goes back to v2.
    aliases.rollback(session, model_name="toy", alias="production")
    assert aliases.get_alias(session, model_name="toy", alias="production").version == v2
    named = aliases.rollback(session, model_name="toy", alias="production", to=v3, reason="why")
    assert (named.from_version, named.to_version, named.reason) == (v2, v3, "why")


def test_rollback_refusals(session: Session) -> None:
    v1, _, _ = three_versions(session)
    with pytest.raises(AliasNotFound, match="has no alias 'staging'"):
        aliases.rollback(session, model_name="toy", alias="staging")
    aliases.set_alias(session, model_name="toy", alias="staging", version=v1)
    with pytest.raises(NoPreviousVersion, match="no previous version") as exc:
        aliases.rollback(session, model_name="toy", alias="staging")
    assert exc.value.code == "no_previous_version"
    with pytest.raises(VersionNotFound, match="has no version 99"):
        aliases.rollback(session, model_name="toy", alias="staging", to=99)


def test_delete_is_recorded_and_previous_restores_it(session: Session) -> None:
    v1, v2, _ = three_versions(session)
    aliases.set_alias(session, model_name="toy", alias="staging", version=v1)
    aliases.set_alias(session, model_name="toy", alias="staging", version=v2)
    gone = aliases.delete_alias(session, model_name="toy", alias="staging", actor="x")
    assert (gone.from_version, gone.to_version) == (v2, None)
    with pytest.raises(AliasNotFound):
        aliases.get_alias(session, model_name="toy", alias="staging")
    with pytest.raises(AliasNotFound):
        aliases.delete_alias(session, model_name="toy", alias="staging")
    aliases.rollback(session, model_name="toy", alias="staging")
    assert aliases.get_alias(session, model_name="toy", alias="staging").version == v2


@pytest.mark.parametrize(
    "bad", ["Production", "1st", "", "a b", "latest", "history", "v3", "x" * 64, "prod\n"]
)
def test_alias_names_are_checked(session: Session, bad: str) -> None:
    (v1, _, _) = three_versions(session)
    with pytest.raises(AliasInvalid) as exc:
        aliases.set_alias(session, model_name="toy", alias=bad, version=v1)
    assert exc.value.code == "alias_invalid"


def test_an_aliased_version_cannot_be_deleted(session: Session) -> None:
    v1, _, _ = three_versions(session)
    aliases.set_alias(session, model_name="toy", alias="production", version=v1)
    with pytest.raises(VersionInUse, match=r"alias\(es\) \['production'\] point at it"):
        versions.delete_version(session, model_name="toy", version=v1)


ROUNDS = 6


def test_two_clients_moving_one_alias_at_once(engine: Engine) -> None:
    """Each round, two threads with their own connections move `production` at the same
    moment (the first round both create it). The end: one alias row, two history rows
    per round, and a history in which every move starts where the one before ended."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    with Session(engine, expire_on_commit=False) as s:
        numbers = [make_version(s, model_name=name).version for _ in range(2)]
        s.commit()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def client(version: int) -> None:
        try:
            for _ in range(ROUNDS):
                barrier.wait(timeout=30)
                with Session(engine, expire_on_commit=False) as s:
                    aliases.set_alias(
                        s, model_name=name, alias="production", version=version, actor=str(version)
                    )
                    s.commit()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with Session(engine) as s:
        model_id = s.scalar(select(RegisteredModel.id).where(RegisteredModel.name == name))
        rows = s.scalars(select(Alias).where(Alias.registered_model_id == model_id)).all()
        events = s.scalars(
            select(AliasEvent)
            .where(AliasEvent.registered_model_id == model_id)
            .order_by(AliasEvent.id)
        ).all()
        current = aliases.get_alias(s, model_name=name, alias="production").version
    assert len(rows) == 1
    assert len(events) == 2 * ROUNDS
    assert events[0].from_version is None
    for before, after in zip(events, events[1:], strict=False):
        assert after.from_version == before.to_version, [
            (e.from_version, e.to_version) for e in events
        ]
    assert events[-1].to_version == current
    assert {e.actor for e in events} == {str(n) for n in numbers}


def test_deleting_a_version_while_an_alias_moves_to_it(engine: Engine) -> None:
    """Either the delete wins (the alias move then finds no such version: 404) or the move
    wins (the delete then finds the alias: 409); never a foreign-key error or a dangling
    alias."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    with Session(engine, expire_on_commit=False) as s:
        numbers = [make_version(s, model_name=name).version for _ in range(ROUNDS)]
        s.commit()
    barrier = threading.Barrier(2)
    outcomes: dict[str, list[str]] = {"delete": [], "alias": []}

    def run(kind: str) -> None:
        for n in numbers:
            try:
                barrier.wait(timeout=30)
            except threading.BrokenBarrierError:
                return
            with Session(engine, expire_on_commit=False) as s:
                try:
                    if kind == "delete":
                        versions.delete_version(s, model_name=name, version=n)
                    else:
                        aliases.set_alias(s, model_name=name, alias="production", version=n)
                    s.commit()
                    outcomes[kind].append("ok")
                except (VersionInUse, VersionNotFound) as exc:
                    s.rollback()
                    outcomes[kind].append(exc.code)
                except Exception as exc:
                    s.rollback()
                    outcomes[kind].append(f"{type(exc).__name__}: {exc}")
                    barrier.abort()

    threads = [threading.Thread(target=run, args=(k,)) for k in ("delete", "alias")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    pairs = list(zip(outcomes["delete"], outcomes["alias"], strict=True))
    assert len(pairs) == ROUNDS
    for pair in pairs:
        assert pair in {("ok", "version_not_found"), ("version_in_use", "ok")}, pairs
    if "ok" in outcomes["alias"]:
        with Session(engine) as s:
            current = aliases.get_alias(s, model_name=name, alias="production")
            assert current.version in numbers
