"""Both artifact backends, for real: a folder on disk, and an S3 bucket on moto's S3
server started here as its own process on loopback and spoken to over HTTP by boto3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from registry.artifacts import (
    ArtifactStore,
    LocalArtifactStore,
    S3ArtifactStore,
    make_artifact_store,
    sha256_hex,
)
from registry.errors import ArtifactCorrupt, ArtifactMissing, ArtifactStoreUnavailable
from registry.settings import RegistrySettings
from tests.s3server import moto_s3_server, s3_client


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as url:
        yield url


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"kiln-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return make_artifact_store(RegistrySettings(kiln_home=tmp_path, database_url="sqlite://"))
    endpoint = request.getfixturevalue("s3_endpoint")
    settings = RegistrySettings(
        kiln_home=tmp_path,
        database_url="sqlite://",
        artifact_store="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=request.getfixturevalue("bucket"),
        s3_prefix="kiln/artifacts",
        s3_region="us-east-1",
        aws_access_key_id=SecretStr("testing"),
        aws_secret_access_key=SecretStr("testing"),
    )
    return make_artifact_store(settings)


def overwrite_behind_the_store(store: ArtifactStore, digest: str, data: bytes) -> None:
    if isinstance(store, LocalArtifactStore):
        (store.root / digest[:2] / digest).write_bytes(data)
    else:
        assert isinstance(store, S3ArtifactStore)
        store._s3.put_object(Bucket=store.bucket, Key=store._key(digest), Body=data)


def test_put_get_round_trip_by_content_hash(store: ArtifactStore) -> None:
    data = os.urandom(50_000)
    digest = store.put(data)
    assert digest == sha256_hex(data)
    assert store.exists(digest)
    assert store.get(digest) == data
    assert store.put(data) == digest  # the same bytes twice: one object


def test_the_factory_builds_the_backend_the_settings_name(store: ArtifactStore) -> None:
    if isinstance(store, S3ArtifactStore):
        assert store.prefix == "kiln/artifacts/"
        digest = store.put(b"where does it go")
        head = store._s3.head_object(
            Bucket=store.bucket, Key=f"kiln/artifacts/{digest[:2]}/{digest}"
        )
        assert head["ContentLength"] == len(b"where does it go")
    else:
        assert isinstance(store, LocalArtifactStore)


def test_a_corrupted_artifact_is_refused(store: ArtifactStore) -> None:
    digest = store.put(b"the real model bytes")
    overwrite_behind_the_store(store, digest, b"the real model bytez")
    with pytest.raises(ArtifactCorrupt, match=f"artifact {digest} .*is corrupt") as exc:
        store.get(digest)
    assert exc.value.code == "artifact_corrupt"


def test_storing_the_bytes_again_repairs_a_damaged_copy(store: ArtifactStore) -> None:
    data = os.urandom(20_000)
    digest = store.put(data)
    overwrite_behind_the_store(store, digest, data[:7_000])
    with pytest.raises(ArtifactCorrupt):
        store.get(digest)
    assert store.put(data) == digest
    assert store.get(digest) == data


def test_a_truncated_artifact_is_refused(store: ArtifactStore) -> None:
    data = os.urandom(10_000)
    digest = store.put(data)
    overwrite_behind_the_store(store, digest, data[:5_000])
    with pytest.raises(ArtifactCorrupt):
        store.get(digest)


def test_a_missing_artifact_is_refused(store: ArtifactStore) -> None:
    digest = sha256_hex(b"never stored")
    assert not store.exists(digest)
    with pytest.raises(ArtifactMissing) as exc:
        store.get(digest)
    assert exc.value.code == "artifact_missing"
    for bad in ("../../etc/passwd", digest + "\n"):
        with pytest.raises(ArtifactMissing, match="not a sha256"):
            store.get(bad)


def test_delete_removes_it(store: ArtifactStore) -> None:
    digest = store.put(b"short-lived")
    store.delete(digest)
    assert not store.exists(digest)
    with pytest.raises(ArtifactMissing):
        store.get(digest)
    store.delete(digest)  # deleting twice is fine


def test_an_interrupted_local_write_leaves_nothing_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalArtifactStore(tmp_path)
    data = os.urandom(1000)

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt  # the process is stopped between the write and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.put(data)
    digest = sha256_hex(data)
    assert not store.exists(digest)
    with pytest.raises(ArtifactMissing):
        store.get(digest)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # the temp file is gone too
    monkeypatch.undo()
    assert store.get(store.put(data)) == data


def test_an_interrupted_s3_upload_leaves_nothing_readable(s3_endpoint: str, bucket: str) -> None:
    """A multipart upload that never completes (the uploader died) is not an object."""
    client = s3_client(s3_endpoint)
    store = S3ArtifactStore(client, bucket=bucket, prefix="p")
    data = os.urandom(6 * 1024 * 1024)
    digest = sha256_hex(data)
    upload = client.create_multipart_upload(Bucket=bucket, Key=store._key(digest))
    client.upload_part(
        Bucket=bucket,
        Key=store._key(digest),
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=data[: 5 * 1024 * 1024],
    )
    assert not store.exists(digest)
    with pytest.raises(ArtifactMissing):
        store.get(digest)
    assert store.put(data) == digest
    assert store.get(digest) == data


def test_an_unreachable_bucket_is_a_clear_error(s3_endpoint: str) -> None:
    store = S3ArtifactStore(s3_client(s3_endpoint), bucket="no-such-bucket")
    with pytest.raises(ArtifactStoreUnavailable, match="s3://no-such-bucket/.*NoSuchBucket"):
        store.put(b"x")


def test_s3_settings_need_a_bucket(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ARTIFACT_STORE=s3 needs S3_BUCKET"):
        RegistrySettings(kiln_home=tmp_path, artifact_store="s3")
    secret = RegistrySettings(
        kiln_home=tmp_path,
        artifact_store="s3",
        s3_bucket="b",
        aws_secret_access_key=SecretStr("hush"),
    )
    assert "hush" not in repr(secret)


def test_artifact_store_round_trip_and_hash_check(tmp_path: pytest.TempPathFactory) -> None:
    store = LocalArtifactStore(tmp_path)  # type: ignore[arg-type]
    digest = store.put(b"onnx bytes")
    assert digest == sha256_hex(b"onnx bytes")
    assert store.get(digest) == b"onnx bytes"
    assert store.put(b"onnx bytes") == digest
    # No temp file is left behind beside the real one.
    assert [p.name for p in (tmp_path / digest[:2]).iterdir()] == [digest]  # type: ignore[operator]
    (tmp_path / digest[:2] / digest).write_bytes(b"tampered")  # type: ignore[operator]
    with pytest.raises(ArtifactCorrupt, match="corrupt"):
        store.get(digest)
    with pytest.raises(ArtifactMissing, match="not in the store"):
        store.get("0" * 64)
