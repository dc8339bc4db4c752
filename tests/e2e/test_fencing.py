"""A paused worker whose job went to another attempt writes nothing when it resumes, on
real processes: the stack's worker trains, is frozen with SIGSTOP until the sweeper takes
the job back, a second worker claims it, and the first is thawed with SIGCONT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Stack, children_of, http
from tests.e2e.test_end_to_end import SPEC, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _wait_job(api: str, job_id: str, until: Any, what: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = http.get(f"{api}/jobs/{job_id}", timeout=10).json()
        if until(job):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id}: {what} did not happen in {timeout}s; last: {job}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def second_worker(stack: Stack) -> Iterator[subprocess.Popen[bytes]]:
    """Another Celery worker on the stack's registry and broker, to take the job back."""
    log = (stack.home / "second-worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.worker", "worker", "--loglevel", "INFO"]
        + ["-n", "second@%h"],
        env={**stack.env, "WORKER_FOLD_PROCESSES": "1"},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_a_resumed_worker_whose_job_was_taken_back_stops_and_writes_nothing(
    stack: Stack, second_worker: subprocess.Popen[bytes]
) -> None:
    # Folds one after another in the job's process: long enough to be caught mid-fold.
    spec = {**SPEC, "epochs": 150, "k_folds": 2}
    resp = http.post(
        f"{stack.api}/jobs",
        json={"model_name": "cancer-fenced", "dataset": "sklearn:breast_cancer", "spec": spec},
    )
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    first = _wait_job(
        stack.api,
        job_id,
        lambda j: j["state"] == "running" and j["progress"] and j["attempt"] == 1,
        "the first attempt's progress",
    )
    zombie = int(first["worker"].rsplit(":", 1)[1])
    frozen = [zombie, *children_of(zombie)]  # with its fold processes, if it has any
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        # JOB_HEARTBEAT_TIMEOUT_S=10 in the stack: the sweeper queues it again, and the
        # second worker (the first one's only process is frozen) claims it.
        second = _wait_job(
            stack.api,
            job_id,
            lambda j: j["attempt"] == 2 and j["state"] == "running",
            "the take-back and the second claim",
        )
        assert second["worker"] != first["worker"]
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)

    # The thawed attempt stops at its next write and its process ends, like a cancelled one.
    deadline = time.monotonic() + 120
    while _alive(zombie):
        assert time.monotonic() < deadline, f"the resumed worker kept running:\n{stack.log_tail()}"
        time.sleep(0.3)

    job, _ = wait_for(stack.api, job_id, timeout=400)
    assert job["state"] == "succeeded", f"{job['reason']}\n{stack.log_tail()}"
    assert job["attempt"] == 2
    assert job["worker"] == second["worker"]
    assert job["reason"] is None
    claims = [e["message"] for e in job["events"] if e["state"] == "running"]
    assert claims == [f"claimed by {first['worker']}", f"claimed by {second['worker']}"]
    assert [e["state"] for e in job["events"]][-1] == "succeeded"
    # The first attempt's task ended at a refused write, and only the other registered.
    # Either worker may have claimed first (both wait on the queue): tell them by logs.
    stack_log = stack.log.read_text(errors="replace")
    second_log = (stack.home / "second-worker.log").read_text(errors="replace")
    by_stack = "registered cancer-fenced" in stack_log
    assert by_stack != ("registered cancer-fenced" in second_log), "registered by both"
    assert "attempt 1 superseded" in (second_log if by_stack else stack_log)
    # One version, the second attempt's, and one row per fold.
    model = http.get(f"{stack.api}/models/cancer-fenced").json()
    assert model["versions"] == [job["model_version"]] == [1]
    assert sorted(f["fold"] for f in job["folds"]) == [1, 2]
