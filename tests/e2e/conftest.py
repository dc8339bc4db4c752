"""Start the whole of Kiln as real processes with `kiln up`: uvicorn servers and a Celery
worker, on the embedded default and on PostgreSQL + Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import create_pg_database, drop_pg_database, pg_url, require_server

REDIS_URL = os.environ.get("KILN_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
# The end-to-end tests' HTTP client. A stack on PostgreSQL requires API keys: its admin
# key goes here, and into KILN_API_KEY for the `kiln` commands the tests run.
http = httpx.Client(timeout=30)


def kiln_command() -> str:
    return shutil.which("kiln", path=str(Path(sys.executable).parent)) or "kiln"


def bootstrap_key(env: dict[str, str]) -> str:
    """Migrate the stack's registry and make its first admin key with `kiln keys
    bootstrap`, as an operator does before the first start."""
    kiln = kiln_command()
    subprocess.run([kiln, "db", "upgrade"], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [kiln, "keys", "bootstrap", "--owner", "e2e-admin"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("kiln_"), made.stdout
    env["KILN_API_KEY"] = token
    http.headers["Authorization"] = f"Bearer {token}"
    return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the parent pid is the 2nd field after ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def maps_tensorflow(pid: int) -> bool:
    maps = (Path("/proc") / str(pid) / "maps").read_text()
    return "tensorflow" in maps or "_pywrap_tf" in maps


@dataclass
class Stack:
    kind: str
    home: Path
    api: str
    predict: str
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    def pid_of(self, needle: str) -> int:
        for pid in children_of(self.proc.pid):
            if needle in cmdline(pid):
                return pid
        raise LookupError(f"no child of kiln up runs {needle!r}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]


def wait_ready(stack: Stack, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.proc.poll() is not None:
            raise RuntimeError(f"kiln up exited with {stack.proc.returncode}:\n{stack.log_tail()}")
        try:
            if (
                httpx.get(f"{stack.api}/healthz", timeout=2).status_code == 200
                and httpx.get(f"{stack.predict}/v2/health/ready", timeout=2).status_code == 200
            ):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"Kiln did not become ready in {timeout}s:\n{stack.log_tail()}")


@pytest.fixture(scope="module", params=["embedded", "postgres+redis"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp(f"kiln-{request.param.replace('+', '-')}")
    api_port, predict_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        KILN_HOME=str(home),
        API_PORT=str(api_port),
        PREDICT_PORT=str(predict_port),
        # Short enough that the crash test sees a dead worker's job recovered in seconds.
        JOB_HEARTBEAT_TIMEOUT_S="10",
        JOB_SWEEP_INTERVAL_S="2",
        WORKER_HEARTBEAT_INTERVAL_S="1",
        PYTHONUNBUFFERED="1",
    )
    # A test module may set more of the stack's variables (PREDICT_WORKERS, say).
    env.update(getattr(request.module, "STACK_ENV", {}))
    dbname = None
    if request.param == "postgres+redis":
        dbname = create_pg_database()
        env["DATABASE_URL"] = pg_url(dbname)
        env["REDIS_URL"] = REDIS_URL
        require_server(
            "Redis on 127.0.0.1:6379",
            lambda: redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping(),
        )
        redis.Redis.from_url(REDIS_URL).flushdb()
        bootstrap_key(env)
    log = home / "kiln-up.log"
    kiln = kiln_command()
    with log.open("wb") as out:
        # ... and more arguments of kiln up (--workers 2, say).
        args = getattr(request.module, "STACK_ARGS", [])
        proc = subprocess.Popen([kiln, "up", *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    s = Stack(
        kind=request.param,
        home=home,
        api=f"http://127.0.0.1:{api_port}",
        predict=f"http://127.0.0.1:{predict_port}",
        proc=proc,
        log=log,
        env=env,
    )
    try:
        wait_ready(s)
        yield s
    finally:
        kids = children_of(proc.pid)
        clean = False
        if proc.poll() is None:
            # What a user's Ctrl-C does: kiln up stops its children and exits 0.
            proc.send_signal(signal.SIGINT)
            try:
                clean = proc.wait(timeout=40) == 0
            except subprocess.TimeoutExpired:
                proc.kill()
        left = [pid for pid in kids if Path(f"/proc/{pid}").exists() and cmdline(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        http.headers.pop("Authorization", None)
        if dbname:
            drop_pg_database(dbname)
        assert clean, f"kiln up did not exit cleanly on Ctrl-C:\n{s.log_tail()}"
        assert not left, f"kiln up left processes running: {[cmdline(p) for p in left]}"
