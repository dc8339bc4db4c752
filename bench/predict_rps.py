"""Requests per second of Kiln's predictor against a bare FastAPI + ORT reference.

    .venv/bin/python bench/predict_rps.py [--model-onnx PATH --signature PATH] [--seconds 5]

Without a model it builds an 8-12-8-1 MLP (ReLU, ReLU, Sigmoid) with random weights.
Each server runs as its own uvicorn process pinned to CPU 0 when `taskset` exists; one
sequential keep-alive client, pinned elsewhere when it can be, sends one-row OIP infer
requests. Prints numbers only: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mlp"


def build_mlp(directory: Path) -> tuple[Path, Path]:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    sizes = [8, 12, 8, 1]
    nodes, initializers = [], []
    current = "features"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w, b = f"W{i}", f"b{i}"
        initializers += [
            numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), w),
            numpy_helper.from_array(rng.normal(size=(n_out,)).astype(np.float32), b),
        ]
        nodes += [
            helper.make_node("MatMul", [current, w], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", b], [f"a{i}"]),
        ]
        last = i == len(sizes) - 2
        out = "output" if last else f"h{i}"
        nodes.append(helper.make_node("Sigmoid" if last else "Relu", [f"a{i}"], [out]))
        current = out
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # onnx 1.23's default is newer than onnxruntime accepts
    onnx_path = directory / "mlp.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    signature = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, sizes[0]]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}],
        "feature_names": [f"x{i}" for i in range(sizes[0])],
        "task": "binary",
        "class_labels": [0, 1],
        "target": "y",
    }
    signature_path = directory / "signature.json"
    signature_path.write_text(json.dumps(signature))
    return onnx_path, signature_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(module: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
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
    ]
    if shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def drive(bases: dict[str, str], body: bytes, seconds: float) -> dict[str, dict[str, Any]]:
    """Alternate short slices between the servers, so load that drifts on a shared
    machine falls on both alike, until each has had `seconds` of requests."""
    headers = {"content-type": "application/json"}
    clients = {label: httpx.Client(base_url=base, timeout=10.0) for label, base in bases.items()}
    url = f"/v2/models/{MODEL}/infer"
    latencies: dict[str, list[float]] = {label: [] for label in bases}
    busy = dict.fromkeys(bases, 0.0)
    errors = dict.fromkeys(bases, 0)
    first: dict[str, Any] = {}
    first_ms: dict[str, float] = {}
    try:
        for label, client in clients.items():
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            response.raise_for_status()
            first_ms[label] = (time.perf_counter() - started) * 1000
            first[label] = response.json()["outputs"][0]["data"]
            warm_until = time.perf_counter() + 0.5
            while time.perf_counter() < warm_until:
                client.post(url, content=body, headers=headers)
        slice_s = min(0.5, seconds)
        while min(busy.values()) < seconds:
            for label, client in clients.items():
                now = time.perf_counter()
                end = now + slice_s
                slice_started = now
                while now < end:
                    response = client.post(url, content=body, headers=headers)
                    after = time.perf_counter()
                    latencies[label].append(after - now)
                    errors[label] += response.status_code != 200
                    now = after
                busy[label] += now - slice_started
    finally:
        for client in clients.values():
            client.close()
    results = {}
    for label in bases:
        ms = np.asarray(latencies[label]) * 1000
        results[label] = {
            "rps": len(ms) / busy[label],
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "requests": len(ms),
            "errors": errors[label],
            "first_ms": first_ms[label],
            "output": first[label],
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-onnx", type=Path)
    parser.add_argument("--signature", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if (args.model_onnx is None) != (args.signature is None):
        parser.error("give both --model-onnx and --signature, or neither")

    cpus = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") and len(cpus) > 1:
        # Keep the client off the servers' core so the two do not take turns on it.
        os.sched_setaffinity(0, [c for c in cpus if c != 0])

    with tempfile.TemporaryDirectory() as tmp:
        if args.model_onnx is None:
            onnx_path, signature_path = build_mlp(Path(tmp))
        else:
            onnx_path, signature_path = args.model_onnx.resolve(), args.signature.resolve()
        signature = json.loads(signature_path.read_text())
        n_features = int(signature["inputs"][0]["shape"][1])
        row = np.random.default_rng(1).normal(size=(1, n_features)).astype(np.float32)
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": signature["inputs"][0]["name"],
                        "shape": [1, n_features],
                        "datatype": "FP32",
                        "data": row.ravel().tolist(),
                    }
                ]
            }
        ).encode()
        env = {
            "KILN_BENCH_ONNX": str(onnx_path),
            "KILN_BENCH_SIGNATURE": str(signature_path),
            "KILN_BENCH_MODEL": MODEL,
            "KILN_HOME": str(Path(tmp) / "kiln"),
            "PREDICT_DEVICE": "cpu",
        }

        servers = {"kiln": "bench._serve_kiln", "reference": "bench._serve_reference"}
        processes: list[subprocess.Popen[bytes]] = []
        bases: dict[str, str] = {}
        ready_s: dict[str, float] = {}
        try:
            # Started one after the other, so each start time is its own.
            for label, module in servers.items():
                port = free_port()
                bases[label] = f"http://127.0.0.1:{port}"
                started = time.perf_counter()
                processes.append(start_server(module, port, env))
                wait_ready(f"{bases[label]}/v2/health/ready", processes[-1])
                ready_s[label] = time.perf_counter() - started
            results = drive(bases, body, args.seconds)
        finally:
            for process in processes:
                stop(process)
        for label, r in results.items():
            r["ready_s"] = ready_s[label]

    print(f"model: {onnx_path.name}, {n_features} features, one row per request")
    print(f"pinning: servers on CPU 0 {'(taskset)' if shutil.which('taskset') else '(none)'}")
    for label, r in results.items():
        print(
            f"{label:>9}: {r['rps']:8.0f} req/s   p50 {r['p50_ms']:6.3f} ms   "
            f"p99 {r['p99_ms']:6.3f} ms   ({r['requests']} requests, {r['errors']} errors, "
            f"ready after {r['ready_s']:.2f} s)"
        )
    kiln, ref = results["kiln"], results["reference"]
    print(f"kiln / reference: {kiln['rps'] / ref['rps']:.2f}x requests/s")
    print(
        f"predictor start to /v2/health/ready: {kiln['ready_s']:.2f} s; first infer "
        f"(loads the model) {kiln['first_ms']:.1f} ms"
    )
    same = np.allclose(kiln["output"], ref["output"], atol=1e-6)
    print(f"outputs agree: {same} (kiln {kiln['output']}, reference {ref['output']})")


if __name__ == "__main__":
    main()
