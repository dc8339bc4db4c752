"""registry/versions.py: version numbers per model, idempotent registration, lookups."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry import versions
from registry.errors import ModelNotFound, TagInvalid, VersionNotFound
from registry.models import ModelVersion
from registry.tags import check_tag
from tests.factories import make_job, make_version


def test_versions_are_numbered_per_model(session: Session) -> None:
    a1 = make_version(session, model_name="a")
    a2 = make_version(session, model_name="a")
    b1 = make_version(session, model_name="b")
    assert (a1.version, a2.version, b1.version) == (1, 2, 1)
    assert versions.get_version(session, model_name="a").version == 2
    assert versions.get_version(session, model_name="a", version=1).id == a1.id


def test_a_deleted_number_is_never_given_again(session: Session) -> None:
    make_version(session, model_name="n")
    make_version(session, model_name="n")
    versions.delete_version(session, model_name="n", version=2)
    assert make_version(session, model_name="n").version == 3
    versions.delete_version(session, model_name="n", version=3)
    versions.delete_version(session, model_name="n", version=1)
    assert make_version(session, model_name="n").version == 4


def test_register_is_idempotent_per_job(session: Session) -> None:
    job = make_job(session, model_name="c")
    first = make_version(session, job=job)
    again = make_version(session, job=job)
    assert first.id == again.id
    assert (
        len(session.scalars(select(ModelVersion).where(ModelVersion.job_id == job.id)).all()) == 1
    )


def test_missing_model_and_version_errors(session: Session) -> None:
    make_version(session, model_name="d")
    with pytest.raises(ModelNotFound, match="no model named 'zzz'"):
        versions.get_version(session, model_name="zzz")
    with pytest.raises(VersionNotFound, match=r"has no version 7; it has versions \[1\]") as exc:
        versions.get_version(session, model_name="d", version=7)
    assert exc.value.code == "version_not_found"


@pytest.mark.parametrize("bad", ["", "a b", "stage\n", "x" * 251])
def test_tag_keys_are_checked(bad: str) -> None:
    with pytest.raises(TagInvalid) as exc:
        check_tag(bad, "v")
    assert exc.value.code == "tag_invalid"
