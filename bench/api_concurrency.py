"""The control-plane API under many clients on PostgreSQL: GET /models and GET /jobs/{id}
at 10 to 200 connections, with /healthz polled all along (decision 0022).

    .venv/bin/python bench/api_concurrency.py                  # 5 s a cell, 20 s at 200 (~4 min)
    .venv/bin/python bench/api_concurrency.py --seconds 2 --peak-seconds 5 --only after

One run makes a throwaway PostgreSQL database (KILN_TEST_PG_ADMIN, default
postgresql://postgres@127.0.0.1:5432/postgres, as the tests), migrates it, seeds 20 models
of 3 versions each (tags, an alias) and finished jobs with events and folds through the
registry functions, and starts the API with the command `kiln up` runs for it
(services.cli.up.plan), once per configuration:

  old-pool  DATABASE_POOL_SIZE=5 DATABASE_MAX_OVERFLOW=10 DATABASE_POOL_TIMEOUT_S=30
            API_THREADS=40 (SQLAlchemy's and anyio's defaults, the sizes the API had)
  no-cache  API_READ_CACHE_S=0: the polled reads read afresh every time (decision 0023)
  after     the defaults of services/settings.py
  (old-pool, after-2-workers and after-8-threads with --only)

The code before decision 0022, which had no session gate, cannot be started from here:
docs/benchmarks.md has what it did under the same load (it stalled).

Each cell runs two wrk processes at once, half the connections each: one on GET /models
(the page of 20), one on GET /jobs/{id} (cycling through 20 jobs), so each URL has its own
percentiles. wrk's timeout is --timeout s; a request not answered by then counts in
"timeouts". A thread polls GET /healthz every 0.25 s during each cell (3 s timeout, the
probes' timeoutSeconds in deploy/k8s/base/api.yaml) and reports ok/all and the slowest
answer. After each cell the bench waits until GET /models answers within 1 s again and
prints that wait ("back after"). Last, a "404 (floor)" cell at the peak count asks for a
path no route has: what this server does on this machine with no key check, no cache and
no database. Then 200 clients that poll: each waits 0.5 to 1.5 times the poll interval
after every answer, as clients on their own timers do. Nothing is pinned: wrk, the API and
PostgreSQL share the machine's cores, so the header prints the CPU count and load.
Numbers only: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.vocabulary import JobState  # noqa: E402
from registry import aliases, jobs, tags  # noqa: E402
from registry.db import make_engine  # noqa: E402
from registry.migrate import upgrade  # noqa: E402
from services.cli.up import plan  # noqa: E402
from services.settings import ApiSettings, PredictSettings  # noqa: E402
from tests.factories import make_job, make_version  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
# The API probes' timeoutSeconds (deploy/k8s/base/api.yaml).
HEALTH_TIMEOUT_S = 3.0
PG_ADMIN_URL = os.environ.get("KILN_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
CONFIGS = {
    # The old sizes (SQLAlchemy's and anyio's defaults); the session gate is in both.
    "old-pool": {
        "DATABASE_POOL_SIZE": "5",
        "DATABASE_MAX_OVERFLOW": "10",
        "DATABASE_POOL_TIMEOUT_S": "30",
        "API_THREADS": "40",
        "API_WORKERS": "1",
    },
    "after": {},
    # The same code with the polled reads read afresh every time (decision 0023).
    "no-cache": {"API_READ_CACHE_S": "0"},
    # Not in the default run: one process's GIL against two on this machine's two cores.
    "after-2-workers": {"API_WORKERS": "2"},
    "after-8-threads": {"API_THREADS": "8"},
}


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    answered: int
    non_2xx: int
    timeouts: int
    socket_errors: int


@dataclass
class Health:
    codes: list[int | str] = field(default_factory=list)
    slowest_ms: float = 0.0

    @property
    def ok(self) -> int:
        return sum(1 for c in self.codes if c == 200)


@contextmanager
def pg_database() -> Iterator[str]:
    name = f"kiln_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, n_models: int = 20, per_model: int = 3) -> list[str]:
    """Models with versions, tags and an alias; the ids of finished jobs with events and folds."""
    engine = make_engine(url)
    job_ids = []
    with Session(engine, expire_on_commit=False) as s:
        for m in range(n_models):
            name = f"model-{m:02d}"
            for _ in range(per_model):
                job = make_job(s, model_name=name)
                jobs.mark_enqueued(s, job_id=job.id)
                claimed = jobs.claim_job(s, job_id=job.id, worker="bench@host")
                assert claimed is not None
                for fold in range(3):
                    jobs.record_fold(
                        s,
                        job_id=job.id,
                        fold=fold,
                        n_train=80,
                        n_val=20,
                        metrics={"f1": 0.9, "accuracy": 0.91},
                        history={"loss": [0.7, 0.5, 0.4], "val_loss": [0.72, 0.55, 0.45]},
                    )
                make_version(s, model_name=name, job=job)
                jobs.finish_job(s, job_id=job.id, attempt=claimed.attempt, state=JobState.SUCCEEDED)
                job_ids.append(job.id)
            tags.set_model_tag(s, model_name=name, key="team", value="bench")
            aliases.set_alias(s, model_name=name, alias="production", version=per_model)
        s.commit()
    engine.dispose()
    return job_ids[:: max(1, len(job_ids) // 20)][:20]


def read_token(url: str) -> str | None:
    """A read-only API key for the bench's requests, where this Kiln has API keys."""
    try:
        from core.access import Scope
        from registry.keys import create_key
    except ImportError:
        return None
    engine = make_engine(url)
    with Session(engine) as s:
        _, token = create_key(s, owner="bench", scopes=[Scope.READ])
        s.commit()
    engine.dispose()
    return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api(url: str, home: Path, overrides: dict[str, str]) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KILN_HOME": str(home),
        "API_PORT": str(port),
        "PYTHONFAULTHANDLER": "1",  # a crash leaves every thread's stack in api.log
        **overrides,
    }
    env.pop("REDIS_URL", None)
    # plan() reads the settings the child will read, so build them from the child's env.
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        command = plan(ApiSettings(), PredictSettings(), 0)[0].command
    finally:
        os.environ.clear()
        os.environ.update(saved)
    home.mkdir(parents=True)
    log = (home / "api.log").open("w")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited with {process.returncode}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not answer /healthz in 60 s")
            time.sleep(0.1)
        yield base
    finally:
        if process.poll() is not None:
            tail = (home / "api.log").read_text().splitlines()[-20:]
            print(f"the API exited with {process.returncode}:", *tail, sep="\n  ")
            shutil.copy(home / "api.log", f"/tmp/kiln-bench-api-{port}.log")
        else:
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()


def lua(paths: list[str], token: str | None, workdir: Path, poll_ms: int = 0) -> Path:
    """A wrk script cycling through ``paths``; ``poll_ms`` > 0 makes each connection a
    client that polls: it waits about that long after each answer (wrk's `delay`), drawn
    from 0.5 to 1.5 times ``poll_ms`` as clients that poll on their own timers do."""
    script = workdir / f"paths-{abs(hash(tuple(paths)))}-{poll_ms}.lua"
    header = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    pace = (
        f"delay = function() return math.random({poll_ms // 2}, {poll_ms * 3 // 2}) end\n"
        if poll_ms
        else ""
    )
    script.write_text(
        header
        + pace
        + f"local paths = {{{', '.join(json.dumps(p) for p in paths)}}}\n"
        + "local i = 0\n"
        + "request = function()\n"
        + "  i = i % #paths + 1\n"
        + "  return wrk.format(nil, paths[i])\n"
        + "end\n"
    )
    return script


def start_wrk(
    base: str, script: Path, c: int, seconds: int, timeout_s: int
) -> subprocess.Popen[str]:
    command = [WRK, "-t1", f"-c{c}", f"-d{seconds}s", f"--timeout={timeout_s}s", "--latency"]
    return subprocess.Popen([*command, "-s", str(script), base], stdout=subprocess.PIPE, text=True)


def parse(out: str) -> Cell:
    def number(pattern: str) -> int:
        match = re.search(pattern, out)
        return int(match.group(1)) if match else 0

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return Cell(
        rps,
        _percentile(out, "50%"),
        _percentile(out, "99%"),
        number(r"(\d+) requests in"),
        number(r"Non-2xx or 3xx responses: (\d+)"),
        number(r"timeout (\d+)"),
        sum(number(rf"{kind} (\d+)") for kind in ("connect", "read", "write")),
    )


def _percentile(out: str, label: str) -> float:
    match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M)
    if match is None:  # no request answered
        return float("nan")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]


def poll_health(base: str, stop: threading.Event, health: Health) -> None:
    with httpx.Client(timeout=HEALTH_TIMEOUT_S) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                health.codes.append(client.get(f"{base}/healthz").status_code)
            except httpx.TimeoutException:
                health.codes.append("timeout")
            except httpx.TransportError as exc:
                health.codes.append(type(exc).__name__)
            health.slowest_ms = max(health.slowest_ms, (time.perf_counter() - start) * 1000)
            stop.wait(0.25)


def back_after(base: str, token: str | None, limit_s: float) -> float:
    """Seconds until GET /models answers 200 within 1 s again (inf past limit_s)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            if httpx.get(f"{base}/models", headers=headers, timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    return float("inf")


def run_cell(
    base: str, scripts: tuple[Path, Path], c: int, seconds: int, timeout_s: int
) -> tuple[Cell, Cell, Health]:
    health, stop = Health(), threading.Event()
    poller = threading.Thread(target=poll_health, args=(base, stop, health), daemon=True)
    poller.start()
    half = max(1, c // 2)
    procs = [start_wrk(base, s, half, seconds, timeout_s) for s in scripts]
    outs = [p.communicate()[0] for p in procs]
    stop.set()
    poller.join()
    return parse(outs[0]), parse(outs[1]), health


def row(config: str, c: int, url: str, cell: Cell) -> str:
    return (
        f"{config:<7} {c:>4} {url:<13} {cell.rps:8.0f} {cell.p50_ms:9.1f} {cell.p99_ms:9.1f} "
        f"{cell.answered:>8} {cell.non_2xx:>7} {cell.timeouts:>8} {cell.socket_errors:>6}"
    )


def report(config: str, c: int, models: Cell, job: Cell, health: Health, more: str = "") -> None:
    print(row(config, c, "/models", models))
    print(
        row(config, c, "/jobs/{id}", job)
        + f"  {health.ok}/{len(health.codes)} ok, slowest {health.slowest_ms:.0f} ms{more}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per cell below the peak")
    parser.add_argument("--peak-seconds", type=int, default=20, help="at the largest count")
    parser.add_argument("--connections", default="10,25,50,100,150,200")
    parser.add_argument("--timeout", type=int, default=10, help="wrk's per-request timeout, s")
    parser.add_argument("--recover-limit", type=float, default=180.0, help="s; see 'back after'")
    parser.add_argument("--only", default="no-cache,after", help="configurations, in this order")
    parser.add_argument(
        "--poll-ms",
        default="2000,1000",
        help="then, without the read cache and with it: the peak count of clients that each "
        "poll about this often",
    )
    args = parser.parse_args()
    if not Path(WRK).exists():
        sys.exit("wrk is not installed (apt-get install wrk)")
    counts = [int(c) for c in args.connections.split(",")]
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs shared by wrk (2 processes, 1 thread each), the API and "
        f"PostgreSQL; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp, pg_database() as url:
        work = Path(tmp)
        upgrade(url)
        job_ids = seed(url)
        token = read_token(url)
        print(
            f"seeded 20 models x 3 versions, {len(job_ids)} polled jobs; requests "
            + ("carry a read-only API key" if token else "go without a key (Kiln has none)")
        )
        scripts = (
            lua(["/models"], token, work),
            lua([f"/jobs/{j}" for j in job_ids], token, work),
        )
        print(
            f"{'config':<7} {'conn':>4} {'url':<13} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9} "
            f"{'answered':>8} {'non-2xx':>7} {'timeouts':>8} {'sock':>6}  healthz"
        )
        for config in args.only.split(","):
            with api(url, work / config, CONFIGS[config]) as base:
                for c in counts:
                    seconds = args.peak_seconds if c == max(counts) else args.seconds
                    models, job, health = run_cell(base, scripts, c, seconds, args.timeout)
                    back = back_after(base, token, args.recover_limit)
                    report(config, c, models, job, health, f"; back after {back:.1f} s")
                # The floor: the same server's 404 for a path no route has (no key, no
                # database, no cache), under the peak count.
                floor = parse(
                    start_wrk(
                        base,
                        lua(["/no-such-route"], None, work),
                        max(counts),
                        args.seconds,
                        args.timeout,
                    ).communicate()[0]
                )
                print(row(config, max(counts), "404 (floor)", floor), flush=True)
            logged = (work / config / "api.log").read_text()
            print(
                f"{config}: the API logged {logged.count('QueuePool limit')} pool timeouts "
                f"and {logged.count('Traceback')} tracebacks"
            )
        polls = [int(p) for p in args.poll_ms.split(",") if p]
        if polls:
            peak = max(counts)
            print(f"\n{peak} clients polling: each waits about the interval after every answer")
            for config in ("no-cache", "after"):
                with api(url, work / f"polling-{config}", CONFIGS[config]) as base:
                    for poll_ms in polls:
                        paced = (
                            lua(["/models"], token, work, poll_ms),
                            lua([f"/jobs/{j}" for j in job_ids], token, work, poll_ms),
                        )
                        models, job, health = run_cell(
                            base, paced, peak, args.peak_seconds, args.timeout
                        )
                        report(f"{config[:2]}{poll_ms}ms", peak, models, job, health)


if __name__ == "__main__":
    main()
