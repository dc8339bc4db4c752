"""How long Kiln's whole path takes, against the same training run in-process.

    .venv/bin/python bench/e2e_job.py [--epochs 25] [--k 3]

Starts `kiln up` (embedded) in a temporary KILN_HOME and prints:
- how long until the API and the predictor answer (start-up),
- the wall time of one job submitted over HTTP until `succeeded` (upload, queue, k-fold,
  refit, export, parity, registration) against `training.pipeline.run_training` on the same
  data in this process (the baseline: what the platform adds is the difference),
- the first prediction's latency (the model loads lazily) and one client's requests/s.
Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"kiln up exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not answer in {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    csv = frame.to_csv(index=False).encode()
    spec = {
        "task": "binary",
        "layers": [
            {"type": "Dense", "units": 16, "activation": "relu"},
            {"type": "Dropout", "rate": 0.1},
            {"type": "Dense", "units": 8, "activation": "relu"},
            {"type": "Dense", "units": 1, "activation": "sigmoid"},
        ],
        "optimizer": {"name": "adam", "learning_rate": 0.005},
        "loss": "binary_crossentropy",
        "epochs": args.epochs,
        "batch_size": 32,
        "k_folds": args.k,
        "seed": 7,
    }

    home = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    api_port, predict_port = free_port(), free_port()
    env = {
        **os.environ,
        "KILN_HOME": str(home),
        "API_PORT": str(api_port),
        "PREDICT_PORT": str(predict_port),
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    api, predict = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{predict_port}"
    kiln = str(Path(sys.executable).parent / "kiln")
    proc = subprocess.Popen(
        [kiln, "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        t_api = wait(f"{api}/healthz", proc)
        t_predict = wait(f"{predict}/v2/health/ready", proc)
        print(
            f"start-up (kiln up, includes migrations): api {t_api:.2f} s, predictor {t_predict:.2f} s"
        )

        started = time.monotonic()
        ds = httpx.post(
            f"{api}/datasets",
            files={"file": ("bc.csv", io.BytesIO(csv), "text/csv")},
            data={"target": "target"},
        ).json()
        job = httpx.post(
            f"{api}/jobs", json={"model_name": "bench", "dataset": ds["id"], "spec": spec}
        ).json()
        while True:
            state = httpx.get(f"{api}/jobs/{job['id']}").json()
            if state["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        through_kiln = time.monotonic() - started
        if state["state"] != "succeeded":
            raise SystemExit(f"job {state['state']}: {state['reason']}")

        # Baseline: the same training code in this process (TensorFlow import included,
        # as the worker's fresh child pays it too).
        started = time.monotonic()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from training.data import load_table; from training.pipeline import run_training;"
                "from training.spec import ModelSpec; import json;"
                "t = load_table(open(sys.argv[1], 'rb').read(), target='target', task='binary');"
                "run_training(t, spec=ModelSpec.model_validate(json.loads(sys.argv[2])))",
                str(_write(home / "bc.csv", csv)),
                __import__("json").dumps(spec),
            ],
            check=True,
            env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
            cwd=ROOT,
        )
        in_process = time.monotonic() - started
        print(
            f"end-to-end job over HTTP: {through_kiln:.1f} s; same training in one process: "
            f"{in_process:.1f} s; platform overhead {through_kiln - in_process:+.1f} s "
            f"(ratio {through_kiln / in_process:.2f})"
        )

        row = frame.drop(columns=["target"]).to_numpy(np.float32)[:1]
        body = {
            "inputs": [
                {
                    "name": "features",
                    "shape": [1, 30],
                    "datatype": "FP32",
                    "data": row.ravel().tolist(),
                }
            ]
        }
        with httpx.Client(base_url=predict) as client:
            t0 = time.monotonic()
            client.post("/v2/models/bench/infer", json=body).raise_for_status()
            print(
                f"first prediction (loads and warms the model): {(time.monotonic() - t0) * 1000:.1f} ms"
            )
            n, lat = 0, []
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                t = time.perf_counter()
                client.post("/v2/models/bench/infer", json=body)
                lat.append(time.perf_counter() - t)
                n += 1
        lat_ms = np.array(lat) * 1000
        print(
            f"one client, one row per request: {n / args.seconds:.0f} req/s, "
            f"p50 {np.percentile(lat_ms, 50):.2f} ms, p99 {np.percentile(lat_ms, 99):.2f} ms"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


if __name__ == "__main__":
    main()
