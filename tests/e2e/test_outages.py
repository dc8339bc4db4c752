"""Outages of the registry database and of the broker, on real processes: a PostgreSQL and
a Redis of the test's own (never the shared servers), the API and the predictor as
uvicorn serves them, and a client that keeps asking while the servers go away.

What a user checks: no answer is a 500; every 503 says so in the service's own error
shape with a Retry-After; a model already loaded keeps serving; a job submitted while the
broker is down is accepted and sent once it is back; and everything answers 200 again
by itself within seconds of the database coming back.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from bench._models import build_mlp, register
from tests.e2e.conftest import free_port
from tests.factories import SPEC

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
PG_BIN = sorted(Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb"))
INFER = {"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": [0.5] * 8}]}


@dataclass
class Postgres:
    """A PostgreSQL server of the test's own, on a free port. PostgreSQL refuses to run
    as root, so under root it runs as the `postgres` user."""

    bin: Path
    data: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def init(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "initdb"), "-D", str(self.data)]
            + ["-U", "postgres", "--auth=trust", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("start", "-l", str(self.data / "server.log"), "-o", options)

    def stop(self) -> None:
        # What a crash or a failover looks like to clients: connections drop mid-flight.
        self._ctl("stop", "-m", "immediate")


@contextlib.contextmanager
def _own_postgres(tmp_path: Path) -> Iterator[Postgres]:
    if not PG_BIN:
        pytest.skip("initdb is not installed (/usr/lib/postgresql/*/bin); the outage test needs it")
    as_user: list[str] = []
    base = tmp_path
    if os.geteuid() == 0:
        # The postgres user cannot enter pytest's root-only temporary folder: the data
        # directory is a folder of its own under the system's temporary directory.
        owner = pwd.getpwnam("postgres")
        base = Path(tempfile.mkdtemp(prefix="kiln-outage-pg-"))
        os.chown(base, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    pg = Postgres(PG_BIN[-1], base / "data", free_port(), as_user)
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        subprocess.run(
            [*as_user, str(pg.bin / "pg_ctl"), "-D", str(pg.data), "stop", "-m", "immediate"],
            capture_output=True,
            check=False,
        )
        if base is not tmp_path:
            shutil.rmtree(base, ignore_errors=True)


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=20)


@dataclass
class Kiln:
    pg: Postgres
    broker: Redis
    api: str
    predict: str
    logs: dict[str, Path]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    job_id: str = ""

    def log_text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")


def _serve(app: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-access-log"]
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_ok(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"{url} exited:\n{log.read_text()[-4000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} not ready:\n{log.read_text()[-4000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def kiln(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kiln]:
    home = tmp_path_factory.mktemp("outages")
    servers = contextlib.ExitStack()
    pg = servers.enter_context(_own_postgres(tmp_path_factory.mktemp("pg")))
    broker = Redis(free_port())
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(
            KILN_HOME=str(home),
            DATABASE_URL=pg.url,
            REDIS_URL=broker.url,
            # Keys are another test's subject; this one is about outages.
            KILN_AUTH="off",
            JOB_SWEEP_INTERVAL_S="1",
            PREDICT_REFRESH_INTERVAL_S="0.5",
            PYTHONUNBUFFERED="1",
        )
        kiln_cli = shutil.which("kiln", path=str(Path(sys.executable).parent)) or "kiln"
        subprocess.run([kiln_cli, "db", "upgrade"], env=env, check=True, timeout=120)
        for name in ("warm", "cold"):
            register(home, name, *build_mlp(seed=0), database_url=pg.url)
        api_port, predict_port = free_port(), free_port()
        logs = {"api": home / "api.log", "predict": home / "predict.log"}
        procs.append(_serve("services.api.app:app", api_port, env, logs["api"]))
        procs.append(_serve("services.predict.app:app", predict_port, env, logs["predict"]))
        k = Kiln(
            pg, broker, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{predict_port}", logs
        )
        _wait_ok(f"{k.api}/healthz", procs[0], logs["api"])
        _wait_ok(f"{k.predict}/v2/health/ready", procs[1], logs["predict"])
        jobs = httpx.get(f"{k.api}/jobs", params={"limit": 1}, timeout=10).json()["items"]
        k.job_id = jobs[0]["id"]
        yield k
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if broker.proc is not None and broker.proc.poll() is None:
            broker.stop()
        servers.close()


@dataclass
class Answer:
    target: str
    status: int
    shaped: bool  # the service's error shape, with a Retry-After, on a 503


def _ask(client: httpx.Client, kiln: Kiln, skip: str = "") -> list[Answer]:
    requests = {
        "api GET /models": ("GET", f"{kiln.api}/models", None),
        "api GET /jobs/{id}": ("GET", f"{kiln.api}/jobs/{kiln.job_id}", None),
        "predict infer, not loaded": ("POST", f"{kiln.predict}/v2/models/cold/infer", INFER),
        "predict infer, loaded": ("POST", f"{kiln.predict}/v2/models/warm/infer", INFER),
    }
    answers = []
    for target, (method, url, body) in requests.items():
        if target == skip:
            continue
        resp = client.request(method, url, json=body)
        shaped = True
        if resp.status_code == 503:
            wait = resp.headers.get("retry-after", "")
            if target.startswith("api"):
                shaped = (
                    resp.headers["content-type"] == "application/problem+json"
                    and resp.json()["code"] == "registry_unavailable"
                )
            else:
                shaped = resp.headers["content-type"] == "application/json" and isinstance(
                    resp.json().get("error"), str
                )
            shaped = shaped and wait.isdigit() and int(wait) >= 1
        answers.append(Answer(target, resp.status_code, shaped))
    return answers


def _counts(answers: list[Answer]) -> dict[str, dict[int, int]]:
    counts: dict[str, Counter[int]] = {}
    for a in answers:
        counts.setdefault(a.target, Counter())[a.status] += 1
    return {target: dict(sorted(c.items())) for target, c in counts.items()}


def test_a_database_outage_is_503s_and_everything_recovers_by_itself(kiln: Kiln) -> None:
    with httpx.Client(timeout=15) as client:
        # Loads "warm"; "cold" is asked for only once the database is down.
        before = _ask(client, kiln, skip="predict infer, not loaded")
        assert [a.status for a in before] == [200, 200, 200]
        kiln.pg.stop()
        down: list[Answer] = []
        try:
            stopped = time.monotonic()
            while time.monotonic() - stopped < 5:
                down += _ask(client, kiln)
        finally:
            kiln.pg.start()
        back: list[Answer] = []
        deadline = time.monotonic() + 30
        while True:
            round_ = _ask(client, kiln)
            back += round_
            if all(a.status == 200 for a in round_):
                break
            assert time.monotonic() < deadline, f"not all 200 30 s after the restart: {round_}"
            time.sleep(0.1)

    report = (
        f"\nwhile PostgreSQL was down (5 s): {_counts(down)}"
        f"\nafter it started again, until all answered 200: {_counts(back)}"
    )
    print(report)  # noqa: T201
    answers = down + back
    assert {a.status for a in answers} <= {200, 503}, _counts(answers)
    assert all(a.shaped for a in answers), [a for a in answers if not a.shaped]
    by_target = _counts(down)
    for target in ("api GET /models", "api GET /jobs/{id}", "predict infer, not loaded"):
        assert 503 in by_target[target], by_target  # the outage was seen
    # A model already loaded needs no database to serve.
    assert set(by_target["predict infer, loaded"]) == {200}, by_target

    # The refresher notices at its next poll (every 0.5 s here) that the registry is back.
    deadline = time.monotonic() + 10
    while "refreshing model references works again" not in kiln.log_text("predict"):
        assert time.monotonic() < deadline, kiln.log_text("predict")[-4000:]
        time.sleep(0.1)
    api_log, predict_log = kiln.log_text("api"), kiln.log_text("predict")
    print(  # noqa: T201
        f"tracebacks in the logs: api {api_log.count('Traceback')}, "
        f"predictor {predict_log.count('Traceback')}; "
        f"API 503 warning lines: {api_log.count('answered 503')}"
    )
    # No request failed with a traceback: every outage answer was a 503 line.
    assert "Exception in ASGI application" not in api_log
    assert "Exception in ASGI application" not in predict_log
    assert "request failed" not in predict_log
    # The refresher said it once, and once that the registry was back.
    assert predict_log.count("refreshing model references failed") == 1, predict_log[-4000:]
    assert predict_log.count("refreshing model references works again") == 1


def test_a_job_submitted_while_the_broker_is_down_is_accepted_and_sent_once_it_is_back(
    kiln: Kiln,
) -> None:
    body = {"model_name": "queued", "dataset": "sklearn:breast_cancer", "spec": SPEC}
    kiln.broker.stop()
    try:
        resp = httpx.post(f"{kiln.api}/jobs", json=body, timeout=60)
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        job = httpx.get(f"{kiln.api}/jobs/{job_id}", timeout=10).json()
        assert job["state"] == "queued"
    finally:
        kiln.broker.start()
    # The sweeper (every second here) sends what the broker refused, once the accepting
    # request has had its 30 s to send it (registry.jobs.sweep_stale_jobs): within a
    # minute of the broker's return, as promised. No worker runs, so the message waits in
    # the training queue.
    client = redis.Redis.from_url(kiln.broker.url)
    deadline = time.monotonic() + 60
    while not any(job_id.encode() in m for m in client.lrange("training", 0, -1)):
        assert time.monotonic() < deadline, f"job {job_id} was not sent in 60 s"
        time.sleep(0.2)
    assert "the broker is not answering" in kiln.log_text("api")
