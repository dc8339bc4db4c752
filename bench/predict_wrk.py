"""Kiln's predictor against a bare FastAPI + ONNX Runtime reference, driven by wrk.

    .venv/bin/python bench/predict_wrk.py                # smoke: 3 s per cell (~2 minutes)
    .venv/bin/python bench/predict_wrk.py --seconds 12   # full size, on a quiet machine
    .venv/bin/python bench/predict_wrk.py --device auto  # CUDA where ONNX Runtime has it

One run builds the 8-12-8-1 MLP and a digits-sized CNN (bench/_models.py), registers
them in a throwaway embedded registry (SQLite + artifact folder), starts Kiln's real
predictor (`uvicorn services.predict.app:app --factory`, models read from that registry)
and the reference (bench/_serve_reference.py), each pinned to CPU 0 with `taskset -c 0`,
and drives both with wrk pinned to the other core, posting the same one-row OIP v2 JSON
body. It prints req/s, p50 and p99 at 1, 8 and 32 connections and Kiln / reference;
rows/s for 256-row against 1-row requests; 2 predictor processes against 1; the CNN
with dynamic batching on against off; and the key check on the fast path (KILN_AUTH
required against off). Numbers only: a measurement, not a test.

wrk takes whole seconds, so each round of a cell runs round(--seconds / --rounds) s, at
least 1. With --device auto both servers ask ONNX Runtime for the CUDA provider (Kiln
through PREDICT_DEVICE, the reference through KILN_BENCH_DEVICE) and the header says
which provider each model's session really got.
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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._models import build_cnn, build_mlp, register  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WRK = shutil.which("wrk") or "/usr/bin/wrk"


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pinned(command: list[str], cpus: str) -> list[str]:
    return ["taskset", "-c", cpus, *command] if shutil.which("taskset") else command


@contextmanager
def server(module: str, env: dict[str, str], *, cpus: str = "0", workers: int = 1) -> Iterator[str]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(
        _pinned(command, cpus), cwd=ROOT, env={**os.environ, **env}, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with {process.returncode}")
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{module} not ready in 60 s")
            time.sleep(0.05)
        yield base
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def infer_body(x: np.ndarray) -> bytes:
    tensor = {"name": "features", "shape": list(x.shape), "datatype": "FP32"}
    tensor["data"] = x.ravel().tolist()
    return json.dumps({"inputs": [tensor]}).encode()


def wrk(
    url: str,
    body: bytes,
    connections: int,
    seconds: int,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> Cell:
    script = workdir / f"post-{abs(hash((body, str(headers))))}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode())}"]
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        lines.append(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}")
    script.write_text("\n".join(lines) + "\n")
    command = [
        WRK,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(_pinned(command, "1"), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        match = re.search(pattern, out)
        if match:
            errors += sum(int(n) for n in re.findall(r"\d+", match.group(1)))
    return Cell(rps, _percentile(out, "50%"), _percentile(out, "99%"), errors)


def _percentile(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def check_same_answers(kiln: str, reference: str, name: str, body: bytes) -> None:
    a = httpx.post(
        f"{kiln}/v2/models/{name}/infer", content=body, headers={"content-type": "application/json"}
    ).json()["outputs"][0]["data"]
    b = httpx.post(
        f"{reference}/v2/models/{name}/infer",
        content=body,
        headers={"content-type": "application/json"},
    ).json()
    if "outputs" not in b:
        raise RuntimeError(f"{name}: the reference answered {b}")
    if not np.allclose(a, b["outputs"][0]["data"], atol=1e-6):
        raise RuntimeError(f"{name}: kiln {a} and reference {b} disagree")


def line(label: str, cell: Cell) -> str:
    return (
        f"{label:<34} {cell.rps:9.0f} req/s  p50 {cell.p50_ms:7.2f} ms  p99 {cell.p99_ms:7.2f} ms"
        + (f"  ERRORS {cell.errors}" if cell.errors else "")
    )


def interleaved(
    urls: list[str],
    body: bytes,
    connections: int,
    seconds: int,
    rounds: int,
    work: Path,
    headers: dict[str, str] | None = None,
) -> tuple[list[Cell], float]:
    """Each server in turn, `rounds` times, `seconds` each: load from other jobs
    on a shared machine then falls on all of them alike. Returns each server's cell
    (mean req/s, median p50/p99 over rounds) and the median per-round ratio of the first
    server's req/s to the second's."""
    runs: list[list[Cell]] = [[] for _ in urls]
    for _ in range(rounds):
        for i, url in enumerate(urls):
            runs[i].append(wrk(url, body, connections, seconds, work, headers))
    cells = [
        Cell(
            float(np.mean([c.rps for c in r])),
            float(np.median([c.p50_ms for c in r])),
            float(np.median([c.p99_ms for c in r])),
            sum(c.errors for c in r),
        )
        for r in runs
    ]
    ratio = float(np.median([a.rps / b.rps for a, b in zip(runs[0], runs[1], strict=True)]))
    return cells, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per cell (full size: 12)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--batch-delay-us", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--only", default="compare,rows,workers,batching,keys", help="which sections to run"
    )
    parser.add_argument(
        "--device", choices=["cpu", "auto"], default="cpu", help="auto: CUDA where ORT has it"
    )
    args = parser.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    sections = set(args.only.split(","))
    if not Path(WRK).exists():
        sys.exit("wrk is not installed (apt-get install wrk)")
    rounds = args.rounds
    secs = max(1, round(args.seconds / rounds))  # per round; wrk takes whole seconds

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        home = work / "kiln"
        models_dir = work / "models"
        models_dir.mkdir()
        rng = np.random.default_rng(1)
        bodies: dict[str, bytes] = {}
        for name, build, item in (("mlp", build_mlp, (8,)), ("cnn", build_cnn, (8, 8, 1))):
            onnx_bytes, signature = build()
            (models_dir / f"{name}.onnx").write_bytes(onnx_bytes)
            register(home, name, onnx_bytes, signature)
            bodies[name] = infer_body(rng.normal(size=(1, *item)).astype(np.float32))
        env = {
            "KILN_HOME": str(home),
            "PREDICT_DEVICE": args.device,
            "PREDICT_PRELOAD": "mlp,cnn",
        }
        ref_env = {"KILN_BENCH_MODELS_DIR": str(models_dir), "KILN_BENCH_DEVICE": args.device}
        print(
            f"wrk -t1 pinned to CPU 1; servers pinned to CPU 0; {rounds} interleaved rounds "
            f"of {secs} s per cell; ratio: median of the rounds' ratios"
        )

        if "compare" in sections:
            print("\n== one process, one core: Kiln / reference, one-row requests ==")
            with (
                server("services.predict.app", env) as kiln,
                server("bench._serve_reference", ref_env) as ref,
            ):
                for name in args.models.split(","):
                    check_same_answers(kiln, ref, name, bodies[name])
                    meta = httpx.get(f"{kiln}/v2/models/{name}").json()
                    print(
                        f"{name}: Kiln's session runs on {meta['parameters']['execution_provider']}"
                    )
                    urls = [f"{kiln}/v2/models/{name}/infer", f"{ref}/v2/models/{name}/infer"]
                    for c in conns:
                        (k, r), ratio = interleaved(urls, bodies[name], c, secs, rounds, work)
                        print(line(f"{name} c={c:<3} kiln", k))
                        print(line(f"{name} c={c:<3} reference", r))
                        print(f"{name} c={c:<3} kiln / reference: {ratio:.2f}x")

        if "rows" in sections:
            print("\n== rows/s: 256-row against 1-row requests (MLP, 32 connections) ==")
            big = infer_body(rng.normal(size=(256, 8)).astype(np.float32))
            with server("services.predict.app", env) as kiln:
                url = f"{kiln}/v2/models/mlp/infer"
                one = wrk(url, bodies["mlp"], 32, secs * rounds, work)
                many = wrk(url, big, 32, secs * rounds, work)
            print(line("mlp 1 row/request", one) + f"  {one.rps:9.0f} rows/s")
            print(line("mlp 256 rows/request", many) + f"  {many.rps * 256:9.0f} rows/s")
            print(f"rows/s 256-row / 1-row: {many.rps * 256 / one.rps:.1f}x")

        if "workers" in sections:
            print("\n== processes: PREDICT_WORKERS=2 on CPUs 0,1 against 1 on CPU 0 (MLP, c=32) ==")
            print("(wrk shares CPU 1 with the second process here: a lower bound on scaling)")
            with (
                server("services.predict.app", env, cpus="0,1", workers=2) as two,
                server("services.predict.app", env) as one,
            ):
                urls = [f"{two}/v2/models/mlp/infer", f"{one}/v2/models/mlp/infer"]
                (t, o), ratio = interleaved(urls, bodies["mlp"], 32, secs, rounds, work)
            print(line("mlp 1 process", o))
            print(line("mlp 2 processes", t))
            print(f"2 / 1 processes: {ratio:.2f}x")

        if "batching" in sections:
            print(
                f"\n== dynamic batching: on ({args.batch_delay_us} us, up to {args.batch_size} "
                "rows) against off =="
            )
            batched = {
                **env,
                "PREDICT_BATCH_MAX_DELAY_US": str(args.batch_delay_us),
                "PREDICT_BATCH_MAX_SIZE": str(args.batch_size),
            }
            with (
                server("services.predict.app", batched) as on,
                server("services.predict.app", env) as off,
            ):
                for name in ("cnn", "mlp"):
                    urls = [f"{on}/v2/models/{name}/infer", f"{off}/v2/models/{name}/infer"]
                    for c in (1, 32):
                        (b, u), ratio = interleaved(urls, bodies[name], c, secs, rounds, work)
                        print(line(f"{name} c={c:<3} batching off", u))
                        print(line(f"{name} c={c:<3} batching on", b))
                        print(f"{name} c={c:<3} on / off: {ratio:.2f}x")

        if "keys" in sections:
            print("\n== API keys: KILN_AUTH=required against off (MLP, one-row requests) ==")
            token = make_key(home)
            auth = {"Authorization": f"Bearer {token}"}
            with (
                server("services.predict.app", {**env, "KILN_AUTH": "required"}) as keyed,
                server("services.predict.app", {**env, "KILN_AUTH": "off"}) as open_,
            ):
                urls = [f"{keyed}/v2/models/mlp/infer", f"{open_}/v2/models/mlp/infer"]
                for c in (1, 32):
                    (k, o), ratio = interleaved(urls, bodies["mlp"], c, secs, rounds, work, auth)
                    print(line(f"mlp c={c:<3} keys off", o))
                    print(line(f"mlp c={c:<3} keys required", k))
                    print(f"mlp c={c:<3} required / off: {ratio:.2f}x")


def make_key(home: Path) -> str:
    """A predict key in the bench's registry (the predictor reads keys from there)."""
    from core.access import Scope
    from registry import keys
    from registry.db import make_engine, make_sessionmaker

    engine = make_engine(f"sqlite:///{home / 'kiln.db'}")
    with make_sessionmaker(engine)() as session:
        _, token = keys.create_key(session, owner="bench", scopes=[Scope.PREDICT])
        session.commit()
    engine.dispose()
    return token


if __name__ == "__main__":
    main()
