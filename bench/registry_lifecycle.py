"""Costs of the registry lifecycle's safety: alias moves under contention, and hash-checked
artifact reads against raw reads of the same bytes.

    .venv/bin/python bench/registry_lifecycle.py                 # smoke: a few seconds
    .venv/bin/python bench/registry_lifecycle.py --moves 2000 --threads 8 --size-mb 64 --reads 20

1. Alias moves per second on a SQLite file and on PostgreSQL (127.0.0.1:5432, skipped when
   it does not answer): one client moving an alias, then `--threads` clients moving the
   same alias at once (each move locks the model row). The single client is the baseline.
2. Artifact reads, MB/s: the local folder and an S3 bucket on moto's S3 server (a separate
   process on loopback, so the S3 numbers measure moto, not AWS), each as a raw read of
   the bytes and as `store.get`, which also hashes them. The raw read is the baseline.

Prints numbers only: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from registry import aliases  # noqa: E402
from registry.artifacts import LocalArtifactStore, S3ArtifactStore  # noqa: E402
from registry.db import make_engine  # noqa: E402
from registry.migrate import upgrade  # noqa: E402
from tests.factories import make_version  # noqa: E402


def alias_moves(url: str, moves: int, threads: int) -> float:
    engine = make_engine(url)
    name = f"bench-{uuid.uuid4().hex[:8]}"
    with Session(engine, expire_on_commit=False) as s:
        versions = [make_version(s, model_name=name).version for _ in range(2)]
        s.commit()
    per_thread = max(1, moves // threads)

    def client(i: int) -> None:
        for k in range(per_thread):
            with Session(engine) as s:
                aliases.set_alias(
                    s, model_name=name, alias="production", version=versions[(i + k) % 2]
                )
                s.commit()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    engine.dispose()
    return per_thread * threads / elapsed


def mb_per_s(size: int, reads: int, fn: object) -> float:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(reads):
        fn()
    return size * reads / (time.perf_counter() - start) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moves", type=int, default=100)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--size-mb", type=float, default=4)
    parser.add_argument("--reads", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as tmp:
        urls = {"sqlite": f"sqlite:///{tmp}/kiln.db"}
        dbname = None
        try:
            from tests.conftest import create_pg_database, pg_url

            dbname = create_pg_database()
            urls["postgresql"] = pg_url(dbname)
        except BaseException as exc:  # pytest.skip raises a BaseException subclass
            print(f"postgresql: skipped ({exc})")
        print(f"alias moves/s ({args.moves} moves)")
        for kind, url in urls.items():
            upgrade(url)
            one = alias_moves(url, args.moves, 1)
            many = alias_moves(url, args.moves, args.threads)
            print(
                f"  {kind:<10} 1 client: {one:8.1f}   {args.threads} clients on one alias: "
                f"{many:8.1f}   ({many / one:.2f}x)"
            )
        if dbname:
            from tests.conftest import drop_pg_database

            drop_pg_database(dbname)

        size = int(args.size_mb * 1024 * 1024)
        data = os.urandom(size)
        print(f"artifact reads, MB/s ({args.size_mb:g} MB x {args.reads})")
        local = LocalArtifactStore(Path(tmp) / "artifacts")
        digest = local.put(data)
        path = local.root / digest[:2] / digest
        raw = mb_per_s(size, args.reads, path.read_bytes)
        checked = mb_per_s(size, args.reads, lambda: local.get(digest))
        print(f"  local      raw: {raw:8.1f}   get (hash checked): {checked:8.1f}")
        from tests.s3server import moto_s3_server, s3_client

        with moto_s3_server(Path(tmp) / "moto.log") as endpoint:
            client = s3_client(endpoint)
            client.create_bucket(Bucket="bench")
            s3 = S3ArtifactStore(client, bucket="bench")
            s3.put(data)
            key = s3._key(digest)
            raw = mb_per_s(
                size, args.reads, lambda: client.get_object(Bucket="bench", Key=key)["Body"].read()
            )
            checked = mb_per_s(size, args.reads, lambda: s3.get(digest))
            print(f"  s3 (moto)  raw: {raw:8.1f}   get (hash checked): {checked:8.1f}")


if __name__ == "__main__":
    main()
