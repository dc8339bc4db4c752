"""The deployment files agree with the code: no Docker engine or cluster needed.

Checks what reading can check: the YAML parses, every Dockerfile compose names exists,
every module a command starts is there, only the worker image installs the `train`
extra, every env name is a settings field, and every probe path is a route.

The kustomizations are rendered here (a renderer limited to what they use, compared with
`kubectl kustomize` where kubectl is installed) and every rendered object is validated
offline: Kubernetes kinds against the schemas kubernetes-validate bundles, strictly (an
unknown field is an error), KEDA's against schemas derived from its CRDs
(deploy_schemas/). Then what the cluster would only show at run time: every pod meets Pod
Security "restricted", each worker queue scales from zero on the list Celery really fills
and on the jobs the registry really counts, the serving Deployments have disruption
budgets, migrations are a Job, and the GPU image pins an onnxruntime-gpu build with the
CUDA it was built for.
"""

from __future__ import annotations

import ast
import base64
import copy
import functools
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import text
from sqlalchemy.orm import Session

from registry.db import make_engine
from registry.migrate import upgrade
from services.api.dispatch import Dispatcher
from services.predict.metrics import PredictMetrics
from services.settings import ApiSettings, PredictSettings
from tests.conftest import require_server
from tests.factories import SPEC, make_job
from workers.celery_app import GPU_QUEUE, TASK_TRAIN, TRAINING_QUEUE, make_celery, queue_for
from workers.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"
SCHEMAS = Path(__file__).parent / "deploy_schemas"
DOCKERFILES = {name: DOCKER / f"{name}.Dockerfile" for name in ("api", "predict", "worker")}
K8S_YAMLS = sorted(K8S.rglob("*.yaml"))
OVERLAYS = ("base", "overlays/dev", "overlays/gpu")

SETTINGS_BY_SERVICE: dict[str, type[Any]] = {
    "api": ApiSettings,
    "predict": PredictSettings,
    "worker": WorkerSettings,
}
ALL_SETTINGS = tuple(SETTINGS_BY_SERVICE.values())

# `services.api.app:app` (uvicorn) and `-A workers.worker` (celery).
UVICORN_TARGET = re.compile(r"\b((?:services|workers)(?:\.\w+)+):(\w+)")
CELERY_APP = re.compile(r"(?:-A|--app)[\s=\"',]+((?:services|workers)(?:\.\w+)+)")
PIP_INSTALL_TARGET = re.compile(r"pip install[^\n]*?\s[\"']?(\.(?:\[[\w,]+\])?)[\"']?(?:\s|$)")


def env_names(settings: type[Any]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def compose_env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- NAME=value` form
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def command_text(command: Any) -> str:
    if command is None:
        return ""
    return command if isinstance(command, str) else " ".join(str(part) for part in command)


def dockerfile_instructions(path: Path) -> list[str]:
    """The instructions, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def dockerfile_stages(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Stage name → (what it is FROM, its instructions), in file order."""
    stages: dict[str, tuple[str, list[str]]] = {}
    current: list[str] = []
    for line in dockerfile_instructions(path):
        if line.startswith("FROM "):
            words = line.split()
            name = words[3] if len(words) == 4 and words[2].upper() == "AS" else str(len(stages))
            current = []
            stages[name] = (words[1], current)
        else:
            current.append(line)
    return stages


def dockerfile_commands(path: Path) -> str:
    return "\n".join(
        line for line in dockerfile_instructions(path) if line.split()[0] in {"CMD", "ENTRYPOINT"}
    )


def install_targets(path: Path) -> set[str]:
    runs = [line for line in dockerfile_instructions(path) if line.startswith("RUN ")]
    return {m for line in runs for m in PIP_INSTALL_TARGET.findall(line)}


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in K8S_YAMLS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path, doc))
    return docs


def k8s_containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for _, doc in k8s_docs():
        if doc.get("kind") == "Deployment" and "containers" in doc["spec"]["template"]["spec"]:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if "image" in container:  # base Deployments, not overlay patches
                    out.append((doc["metadata"]["name"], container))
    return out


def assert_module_defines(module: str, attr: str) -> None:
    """`module` is importable and defines `attr` at top level, read without importing it."""
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{module} is named in a deploy command but cannot be found"
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    assert attr in names, f"{module} has no top-level {attr!r}"


def started_targets(text: str) -> set[tuple[str, str]]:
    targets = set(UVICORN_TARGET.findall(text))
    targets |= {(module, "app") for module in CELERY_APP.findall(text)}
    return targets


# --- docker-compose.yml -------------------------------------------------------------


def test_compose_has_the_five_services() -> None:
    assert set(compose()["services"]) == {"redis", "postgres", "api", "predict", "worker"}


@pytest.mark.parametrize("name", ["api", "predict", "worker"])
def test_compose_builds_from_the_deploy_dockerfiles(name: str) -> None:
    build = compose()["services"][name]["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    dockerfile = ROOT / build["context"] / build["dockerfile"]
    assert dockerfile.is_file(), f"compose service {name} names missing {dockerfile}"
    assert dockerfile.resolve() == DOCKERFILES[name].resolve()
    # The default target, the CPU image (the predictor's last stage).
    assert "target" not in build


@pytest.mark.parametrize("name", ["api", "predict", "worker"])
def test_compose_shares_the_artifact_volume(name: str) -> None:
    data = compose()
    service = data["services"][name]
    assert "artifacts:/var/lib/kiln/artifacts" in service["volumes"]
    assert compose_env(service)["ARTIFACT_DIR"] == "/var/lib/kiln/artifacts"
    assert compose_env(service)["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "artifacts" in data["volumes"]


def test_compose_dependencies_wait_for_health() -> None:
    services = compose()["services"]
    for name in ("api", "predict", "worker"):
        for dependency, condition in services[name]["depends_on"].items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency] or dependency == "api", dependency
    assert {"postgres", "redis"} <= set(services["api"]["depends_on"])


@pytest.mark.parametrize("name", ["redis", "postgres", "api", "predict", "worker"])
def test_compose_env_names_are_settings_fields(name: str) -> None:
    env = set(compose_env(compose()["services"][name]))
    if name == "postgres":
        assert all(var.startswith("POSTGRES_") for var in env), env
        return
    known = env_names(SETTINGS_BY_SERVICE[name]) if name in SETTINGS_BY_SERVICE else set()
    unknown = env - known
    assert not unknown, f"{name} sets {sorted(unknown)}, which its settings class does not read"


# --- Dockerfiles ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["api", "predict", "worker"])
def test_dockerfile_copies_the_distribution(name: str) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {
        src
        for line in dockerfile_instructions(DOCKERFILES[name])
        if line.startswith("COPY ") and "--from" not in line
        for src in shlex.split(line)[1:-1]
    }
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    assert packages <= copied, f"{name}.Dockerfile does not copy {sorted(packages - copied)}"


@pytest.mark.parametrize("name", ["api", "predict", "worker"])
def test_dockerfile_base_and_user(name: str) -> None:
    stages = dockerfile_stages(DOCKERFILES[name])
    seen: list[str] = []
    for stage, (base, _) in stages.items():
        # Every stage starts from python:3.11-slim or from an earlier stage.
        assert base == "python:3.11-slim" or base in seen, (stage, base)
        seen.append(stage)
    lines = dockerfile_instructions(DOCKERFILES[name])
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, f"{name}.Dockerfile runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert image_uid(name) == 10001


def image_uid(name: str) -> int:
    """The numeric user the image runs as (its last USER), which the pods' runAsUser names."""
    lines = dockerfile_instructions(DOCKERFILES[name])
    (user, *_) = [line.split()[1] for line in lines if line.startswith("USER ")][::-1]
    return int(user.split(":")[0])


@pytest.mark.parametrize(
    ("name", "expected"), [("api", "."), ("predict", "."), ("worker", ".[train]")]
)
def test_only_the_worker_installs_the_train_extra(name: str, expected: str) -> None:
    assert install_targets(DOCKERFILES[name]) == {expected}


@pytest.mark.parametrize("name", ["api", "predict"])
def test_serving_images_never_install_tensorflow(name: str) -> None:
    instructions = "\n".join(dockerfile_instructions(DOCKERFILES[name])).lower()
    for package in ("tensorflow", "tf2onnx", "[train]"):
        assert package not in instructions, f"{name}.Dockerfile installs {package}"


@pytest.mark.parametrize(
    ("name", "target", "port"),
    [
        ("api", ("services.api.app", "app"), 8000),
        ("predict", ("services.predict.app", "app"), 8001),
        ("worker", ("workers.worker", "app"), 9101),
    ],
)
def test_dockerfile_starts_the_right_process(name: str, target: tuple[str, str], port: int) -> None:
    path = DOCKERFILES[name]
    commands = dockerfile_commands(path)
    assert started_targets(commands) == {target}
    lines = dockerfile_instructions(path)
    exposed = {int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == {port}
    if name == "worker":
        # Its port is its metrics' (workers/metrics.py), served on every interface.
        assert "ENV WORKER_METRICS_HOST=0.0.0.0" in lines
    else:
        assert f"--port {port}" in commands.replace('", "', " ")
        assert "--factory" in commands


def test_api_image_migrates_before_serving() -> None:
    # For docker compose's single API; the Kubernetes Deployment runs uvicorn alone.
    commands = dockerfile_commands(DOCKERFILES["api"])
    assert commands.index("kiln db upgrade") < commands.index("uvicorn")


def test_every_started_module_exists() -> None:
    texts = [dockerfile_commands(path) for path in DOCKERFILES.values()]
    texts += [command_text(s.get("command")) for s in compose()["services"].values()]
    texts += [
        command_text(c.get("command")) + " " + command_text(c.get("args"))
        for _, c in k8s_containers()
    ]
    targets = set().union(*(started_targets(text) for text in texts))
    assert ("services.api.app", "app") in targets
    for module, attr in targets:
        assert_module_defines(module, attr)


def test_module_check_can_fail() -> None:
    with pytest.raises(AssertionError, match="cannot be found"):
        assert_module_defines("services.no_such_module", "app")
    with pytest.raises(AssertionError, match="no top-level"):
        assert_module_defines("services.settings", "app")


def route_paths() -> str:
    return "\n".join(p.read_text() for p in (ROOT / "services").rglob("*.py"))


@pytest.mark.parametrize("name", ["api", "predict"])
def test_healthcheck_hits_a_route(name: str) -> None:
    checks = [
        line
        for line in dockerfile_instructions(DOCKERFILES[name])
        if line.startswith("HEALTHCHECK")
    ]
    assert len(checks) == 1
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]+)", checks[0])
    assert match, checks[0]
    assert int(match.group(1)) == {"api": 8000, "predict": 8001}[name]
    assert f'"{match.group(2)}"' in route_paths(), f"no route {match.group(2)}"


# --- The GPU predictor image ------------------------------------------------------------

# onnxruntime-gpu on PyPI → the CUDA it was built with (`onnxruntime.print_debug_info()`)
# and the cuDNN major its [cudnn] extra asks for. 1.19 to 1.26 are CUDA 12 builds, 1.27 and
# later CUDA 13 builds (their wheels' Requires-Dist: nvidia-*-cu12 against -cu13). A new
# pin goes here once its build is looked up, with the NVIDIA wheels to match.
ORT_GPU_BUILDS = {"1.26.0": {"cuda": "12.8", "cudnn": 9}}
# The wheels onnxruntime-gpu[cuda,cudnn] 1.26.0 resolves to, with their own dependencies
# (nvidia-cudnn → nvidia-cublas, nvidia-cufft → nvidia-nvjitlink), and the folder under
# site-packages/nvidia/ that holds each one's libraries.
NVIDIA_WHEEL_DIRS = {
    "nvidia-cublas": "cublas",
    "nvidia-cuda-nvrtc": "cuda_nvrtc",
    "nvidia-cuda-runtime": "cuda_runtime",
    "nvidia-cudnn": "cudnn",
    "nvidia-cufft": "cufft",
    "nvidia-curand": "curand",
    "nvidia-nvjitlink": "nvjitlink",
}
# The driver each CUDA release ships with (CUDA toolkit release notes), the minimum for
# its libraries without falling back on minor-version compatibility.
CUDA_DRIVER = {"12.8": (570, 124, 6)}
PIN = re.compile(r"""["']?([A-Za-z0-9][\w.-]*)(\[[\w,]+\])?(==|>=|<=|~=|!=|>|<)?([\w.*]*)["']?""")


def pip_requirements(stage_lines: list[str]) -> dict[str, tuple[str, str]]:
    """Package → (operator, version) of every `pip install` in a stage's RUN lines."""
    found: dict[str, tuple[str, str]] = {}
    for line in stage_lines:
        if not line.startswith("RUN "):
            continue
        for command in re.split(r"&&|;", line[4:]):
            words = shlex.split(command)
            if words[:2] != ["pip", "install"]:
                continue
            for word in words[2:]:
                if word.startswith(("-", ".")):  # options, and the project itself
                    continue
                match = PIN.fullmatch(word)
                assert match, word
                found[match.group(1).lower()] = (match.group(3) or "", match.group(4))
    return found


def gpu_stage() -> tuple[list[str], dict[str, tuple[str, str]], str]:
    """The `gpu` stage's instructions, the pip pins of the stage its venv comes from, and
    the Python of the image it runs on."""
    stages = dockerfile_stages(DOCKERFILES["predict"])
    base, lines = stages["gpu"]
    (source,) = [
        line.split("--from=")[1].split()[0]
        for line in lines
        if line.startswith("COPY --from=") and "/opt/venv" in line
    ]
    python = stages[base][0]
    while python in stages:
        python = stages[python][0]
    return lines, pip_requirements(stages[source][1]), python


def test_gpu_image_pins_an_onnxruntime_gpu_build_and_the_cuda_it_was_built_for() -> None:
    _, pins, _ = gpu_stage()
    unpinned = {name: pin for name, pin in pins.items() if pin[0] != "==" or "*" in pin[1]}
    assert not unpinned, f"not pinned exactly: {unpinned}"
    version = pins["onnxruntime-gpu"][1]
    assert version in ORT_GPU_BUILDS, f"look up onnxruntime-gpu {version}'s CUDA build first"
    build = ORT_GPU_BUILDS[version]
    cuda_major = build["cuda"].split(".")[0]
    nvidia = {name: v for name, (_, v) in pins.items() if name.startswith("nvidia-")}
    # One CUDA major for every NVIDIA wheel, the pin's: a -cu13 wheel beside a CUDA 12
    # build (or the reverse) leaves the CUDA provider unloadable, and ORT runs on the CPU.
    assert {re.sub(r"-cu\d+$", "", name) for name in nvidia} == set(NVIDIA_WHEEL_DIRS)
    assert {name.rsplit("-cu", 1)[1] for name in nvidia} == {cuda_major}
    runtime = nvidia[f"nvidia-cuda-runtime-cu{cuda_major}"]
    assert runtime.split(".")[:2] == build["cuda"].split("."), "the CUDA the build was made with"
    assert int(nvidia[f"nvidia-cudnn-cu{cuda_major}"].split(".")[0]) == build["cudnn"]


def test_gpu_image_puts_the_cuda_libraries_on_the_loader_path() -> None:
    lines, pins, python = gpu_stage()
    assert python == "python:3.11-slim"
    (env,) = [line for line in lines if line.startswith("ENV LD_LIBRARY_PATH=")]
    paths = env.split("=", 1)[1].split(":")
    site = "/opt/venv/lib/python3.11/site-packages"
    expected = {
        f"{site}/nvidia/{folder}/lib"
        for name in pins
        if name.startswith("nvidia-")
        for folder in [NVIDIA_WHEEL_DIRS[re.sub(r"-cu\d+$", "", name)]]
    }
    assert set(paths) == expected
    # The build fails, without a GPU, if the CUDA provider's libraries do not resolve.
    checks = [line for line in lines if line.startswith("RUN ") and "ldd " in line]
    assert len(checks) == 1
    assert f"{site}/onnxruntime/capi/libonnxruntime_providers_cuda.so" in checks[0]
    assert 'grep "not found"' in checks[0]
    assert "CUDAExecutionProvider" in checks[0]


def test_the_default_predictor_image_is_the_cpu_one() -> None:
    stages = dockerfile_stages(DOCKERFILES["predict"])
    last, (_, lines) = list(stages.items())[-1]
    assert last == "cpu"
    assert "COPY --from=build /opt/venv /opt/venv" in lines
    assert "onnxruntime-gpu" in pip_requirements(stages["gpu-build"][1])
    assert "onnxruntime-gpu" not in "\n".join(stages["build"][1])


def documented_driver() -> tuple[int, ...]:
    text = (K8S / "overlays" / "gpu" / "kustomization.yaml").read_text()
    match = re.search(r"NVIDIA driver >= (\d+)\.(\d+)\.(\d+)", text)
    assert match, "the gpu overlay states the minimum NVIDIA driver"
    return tuple(int(part) for part in match.groups())


def test_gpu_overlay_states_the_driver_the_image_needs() -> None:
    _, pins, _ = gpu_stage()
    version = pins["onnxruntime-gpu"][1]
    build = ORT_GPU_BUILDS[version]
    assert documented_driver() >= CUDA_DRIVER[build["cuda"]]
    text = (K8S / "overlays" / "gpu" / "kustomization.yaml").read_text()
    assert f"onnxruntime-gpu {version}, a CUDA {build['cuda']} build" in text


def test_gpu_pin_check_can_fail() -> None:
    unpinned = pip_requirements(
        ['RUN pip install --no-cache-dir "onnxruntime-gpu[cuda,cudnn]>=1.20"']
    )
    assert unpinned == {"onnxruntime-gpu": (">=", "1.20")}
    starred = pip_requirements(['RUN pip install "nvidia-cudnn-cu13==9.*" && pip install x==1'])
    assert starred == {"nvidia-cudnn-cu13": ("==", "9.*"), "x": ("==", "1")}


# --- Rendering the kustomizations ------------------------------------------------------

KUSTOMIZATION_FIELDS = set(
    "apiVersion kind resources labels configMapGenerator secretGenerator images namespace"
    " patches".split()
)
# Strategic merge: the lists these patches touch, by their merge key or replaced whole.
SMP_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
}
SMP_ATOMIC_LISTS = {"tolerations", "command", "args"}
HASH_MARK = "kiln.test/name-suffix-hash"


class Unsupported(NotImplementedError):
    """A kustomization uses more than this renderer does: extend it, or compare with kubectl."""


def kustomize(root: Path) -> list[dict[str, Any]]:
    """`kustomize build root` for the fields Kiln's kustomizations use; anything else raises.

    The order is kustomize's: resources (bases built first), generators, patches, then the
    namespace, labels and images transformers, and last the generated names' hash suffix
    and the references to them."""
    docs = _build(root)
    ids = [resource_id(doc) for doc in docs]
    assert len(ids) == len(set(ids)), f"{root}: the same object twice"
    renamed: dict[tuple[str, str | None, str], str] = {}
    for doc in docs:
        annotations = doc["metadata"].get("annotations", {})
        if annotations.pop(HASH_MARK, None):
            if not annotations:
                del doc["metadata"]["annotations"]
            # Not kustomize's own hash (kubectl's test compares names without it).
            content = json.dumps({"kind": doc["kind"], "data": doc["data"]}, sort_keys=True)
            suffix = hashlib.sha256(content.encode()).hexdigest()[:10]
            key = (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
            doc["metadata"]["name"] = renamed[key] = f"{key[2]}-{suffix}"
    for doc in docs:
        namespace = doc["metadata"].get("namespace")
        for pod in pod_specs(doc):
            for kind, ref in config_refs(pod):
                ref_key = "secretName" if "secretName" in ref else "name"
                ref[ref_key] = renamed.get((kind, namespace, ref[ref_key]), ref[ref_key])
    return docs


def _build(root: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    if unknown := set(kustomization) - KUSTOMIZATION_FIELDS:
        raise Unsupported(f"{root}: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = root / entry
        if path.is_dir():
            docs += _build(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    docs += [_generate("ConfigMap", g) for g in kustomization.get("configMapGenerator", [])]
    docs += [_generate("Secret", g) for g in kustomization.get("secretGenerator", [])]
    for patch in kustomization.get("patches", []):
        docs = _patch(docs, patch, root)
    if "namespace" in kustomization:  # every kind here is namespaced
        for doc in docs:
            doc["metadata"]["namespace"] = kustomization["namespace"]
    for label in kustomization.get("labels", []):
        if set(label) != {"pairs"}:  # includeSelectors, includeTemplates, fields
            raise Unsupported(f"{root}: labels {sorted(label)}")
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in kustomization.get("images", []):
        if set(image) - {"name", "newName", "newTag"}:
            raise Unsupported(f"{root}: images {sorted(image)}")
        for doc in docs:
            for pod in pod_specs(doc):
                for container in pod.get("initContainers", []) + pod["containers"]:
                    container["image"] = _retag(container["image"], image)
    return docs


def _generate(kind: str, generator: dict[str, Any]) -> dict[str, Any]:
    options = generator.get("options", {})
    if set(generator) - {"name", "literals", "options"} or set(options) - {"disableNameSuffixHash"}:
        raise Unsupported(f"{kind} generator {generator}")
    data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": generator["name"]},
    }
    if kind == "Secret":
        doc["type"] = "Opaque"
        data = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    doc["data"] = data
    if not options.get("disableNameSuffixHash"):
        doc["metadata"]["annotations"] = {HASH_MARK: "yes"}
    return doc


def _retag(image: str, entry: dict[str, str]) -> str:
    if "@" in image:
        raise Unsupported(f"digest in {image}")
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    if name != entry["name"]:
        return image
    name = entry.get("newName", name)
    tag = entry.get("newTag", tag)
    return f"{name}:{tag}" if tag else name


def _selected(docs: list[dict[str, Any]], target: dict[str, str]) -> list[dict[str, Any]]:
    if set(target) - {"kind", "name"}:
        raise Unsupported(f"patch target {target}")
    return [
        doc
        for doc in docs
        if doc["kind"] == target.get("kind", doc["kind"])
        and re.fullmatch(target.get("name", ".*"), doc["metadata"]["name"])
    ]


def _patch(docs: list[dict[str, Any]], entry: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    if set(entry) - {"path", "patch", "target"}:
        raise Unsupported(f"patch {sorted(entry)}")
    body = yaml.safe_load((root / entry["path"]).read_text() if "path" in entry else entry["patch"])
    target = entry.get("target")
    if isinstance(body, list):  # JSON 6902
        assert target, "a JSON patch needs a target"
        matched = _selected(docs, target)
        for doc in matched:
            for operation in body:
                _json_patch(doc, operation)
    else:
        same = {"kind": body["kind"], "name": re.escape(body["metadata"]["name"])}
        matched = _selected(docs, target or same)
        if body.get("$patch") == "delete":
            if set(body) - {"apiVersion", "kind", "metadata", "$patch"}:
                raise Unsupported("a delete patch with fields")
            docs = [doc for doc in docs if not any(doc is m for m in matched)]
        else:
            if set(body["metadata"]) != {"name"}:
                raise Unsupported("a patch of metadata")
            for doc in matched:
                _merge(
                    doc,
                    {k: v for k, v in body.items() if k not in {"apiVersion", "kind", "metadata"}},
                )
    assert matched, f"{root}: a patch that matches nothing: {entry}"
    return docs


def _json_patch(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    if operation["op"] not in {"add", "replace", "remove"}:
        raise Unsupported(f"JSON patch op {operation['op']}")
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if operation["op"] == "add":
            node.insert(index, copy.deepcopy(operation["value"]))
        elif operation["op"] == "replace":
            node[index] = copy.deepcopy(operation["value"])
        else:
            del node[index]
        return
    if operation["op"] != "add" and last not in node:
        raise AssertionError(f"JSON patch {operation} on a missing field")
    if operation["op"] == "remove":
        del node[last]
    else:
        node[last] = copy.deepcopy(operation["value"])


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Strategic merge: maps merged, the lists above merged by key or replaced."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise Unsupported(f"directive {key}")
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list) and key in SMP_MERGE_KEYS:
            merge_key = SMP_MERGE_KEYS[key]
            items = target.setdefault(key, [])
            for item in value:
                same = [i for i in items if i[merge_key] == item[merge_key]]
                if same:
                    _merge(same[0], item)
                else:
                    items.append(copy.deepcopy(item))
        elif isinstance(value, list) and key not in SMP_ATOMIC_LISTS:
            raise Unsupported(f"list {key} in a strategic merge patch")
        else:
            target[key] = copy.deepcopy(value)


def resource_id(doc: dict[str, Any]) -> tuple[str, str, str | None, str]:
    meta = doc["metadata"]
    return (doc["apiVersion"], doc["kind"], meta.get("namespace"), meta["name"])


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return [doc["spec"]["template"]["spec"]]
    if doc["kind"] == "CronJob":
        return [doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if doc["kind"] == "Pod":
        return [doc["spec"]]
    return []


def config_refs(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """("ConfigMap" | "Secret", the mapping that names it) for every reference in a pod."""
    for container in pod.get("initContainers", []) + pod["containers"]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]
            if "secretRef" in source:
                yield "Secret", source["secretRef"]
        for var in container.get("env", []):
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]
        if "secret" in volume:
            yield "Secret", volume["secret"]


@functools.cache
def _rendered(overlay: str) -> str:
    return json.dumps(kustomize(K8S / overlay))


def rendered(overlay: str) -> list[dict[str, Any]]:
    """The overlay's objects, a fresh copy for each caller."""
    docs: list[dict[str, Any]] = json.loads(_rendered(overlay))
    return docs


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def hashed_generators() -> set[str]:
    names = set()
    for path in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        for generator in doc.get("configMapGenerator", []) + doc.get("secretGenerator", []):
            if not generator.get("options", {}).get("disableNameSuffixHash"):
                names.add(generator["name"])
    return names


def without_hash_suffixes(node: Any, names: set[str]) -> Any:
    """The same objects with `<generated name>-<hash>` written `<generated name>-HASH`."""
    if isinstance(node, dict):
        return {key: without_hash_suffixes(value, names) for key, value in node.items()}
    if isinstance(node, list):
        return [without_hash_suffixes(item, names) for item in node]
    if isinstance(node, str):
        for name in names:
            node = re.sub(rf"^{re.escape(name)}-[a-z0-9]{{10}}$", f"{name}-HASH", node)
    return node


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_matches_kubectl_kustomize(overlay: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    names = hashed_generators()
    theirs = {
        resource_id(doc): doc
        for doc in without_hash_suffixes([d for d in yaml.safe_load_all(result.stdout) if d], names)
    }
    ours = {resource_id(doc): doc for doc in without_hash_suffixes(rendered(overlay), names)}
    assert sorted(ours, key=str) == sorted(theirs, key=str)
    for doc in [*ours.values(), *theirs.values()]:
        if doc["kind"] == "Secret":  # kustomize wraps long base64 lines, which decode the same
            doc["data"] = {k: base64.b64decode(v) for k, v in doc["data"].items()}
    for key, doc in ours.items():
        assert doc == theirs[key], key


def test_renderer_refuses_what_it_does_not_do(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("namePrefix: x-\n")
    with pytest.raises(Unsupported, match="namePrefix"):
        kustomize(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [a.yaml]\npatches:\n  - target: {kind: Deployment, name: nothing}\n"
        "    patch: '[{op: replace, path: /spec/replicas, value: 1}]'\n"
    )
    (tmp_path / "a.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: 2}\n"
    )
    with pytest.raises(AssertionError, match="matches nothing"):
        kustomize(tmp_path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_render_the_deployments(overlay: str) -> None:
    docs = rendered(overlay)
    expected = {"kiln-api", "kiln-predict", "kiln-worker"}
    if overlay == "overlays/gpu":
        expected.add("kiln-worker-gpu")
    assert set(of_kind(docs, "Deployment")) == expected
    configs = of_kind(docs, "ConfigMap")
    (config,) = configs
    assert config.startswith("kiln-config-"), "the hash suffix rolls the pods on a change"
    for doc in docs:
        for pod in pod_specs(doc):
            for kind, ref in config_refs(pod):
                if kind == "ConfigMap":
                    assert ref["name"] == config
    namespaces = {doc["metadata"].get("namespace") for doc in docs}
    assert namespaces == ({"kiln-dev"} if overlay == "overlays/dev" else {None})


# --- Offline schema validation ---------------------------------------------------------

# KEDA 2.20 is tested on Kubernetes 1.33 to 1.35 (keda.sh/docs/2.20/operate/cluster): the
# oldest and newest of those.
K8S_VERSIONS = ("1.33", "1.35")
KEDA_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-2.20.2-scaledobject.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-2.20.2-triggerauthentication.json",
}
# A trigger's metadata is a string map to the CRD; each scaler reads its own keys (KEDA
# 2.20's scaler pages: redis-lists, postgresql, prometheus). Numbers are strings there.
KEDA_TRIGGERS: dict[str, dict[str, set[str]]] = {
    "redis": {
        "required": {"listName", "listLength"},
        "allowed": set(
            "address addressFromEnv host hostFromEnv port portFromEnv usernameFromEnv"
            " passwordFromEnv listName listLength activationListLength enableTLS unsafeSsl"
            " databaseIndex".split()
        ),
        "auth": set("address host port username password tls ca cert key keyPassword".split()),
        "connection": {"address", "addressFromEnv", "host", "hostFromEnv"},
    },
    "postgresql": {
        "required": {"query", "targetQueryValue"},
        "allowed": set(
            "connectionFromEnv host userName passwordFromEnv port dbName sslmode query"
            " targetQueryValue activationTargetQueryValue".split()
        ),
        "auth": set("connection host userName password port dbName sslmode".split()),
        "connection": {"connection", "connectionFromEnv", "host"},
    },
    "prometheus": {
        "required": {"serverAddress", "query", "threshold"},
        "allowed": set(
            "serverAddress query threshold activationThreshold namespace customHeaders"
            " ignoreNullValues queryParameters unsafeSsl timeout authModes".split()
        ),
        "auth": set(
            "bearerToken username password ca cert key customAuthHeader customAuthValue".split()
        ),
        "connection": {"serverAddress"},
    },
}
KEDA_NUMBERS = set(
    "listLength activationListLength databaseIndex targetQueryValue activationTargetQueryValue"
    " threshold activationThreshold".split()
)


@functools.cache
def keda_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(doc: dict[str, Any], version: str) -> list[str]:
    """Why the API server (strict field validation) would refuse `doc`; [] if it would not.

    A kind that has no schema here raises kubernetes_validate.SchemaNotFoundError."""
    key = (doc["apiVersion"], doc["kind"])
    if key in KEDA_SCHEMAS:
        return [
            f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in keda_validator(KEDA_SCHEMAS[key]).iter_errors(doc)
        ]
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"]
    return []


def trigger_errors(docs: list[dict[str, Any]]) -> list[str]:
    """What KEDA's scalers would refuse: unknown or missing metadata, non-numbers, no way
    to connect, and references to TriggerAuthentications or parameters that are not there."""
    auths = of_kind(docs, "TriggerAuthentication")
    errors = []
    for name, scaled in of_kind(docs, "ScaledObject").items():
        for trigger in scaled["spec"]["triggers"]:
            where = f"{name}/{trigger.get('name', trigger['type'])}"
            rules = KEDA_TRIGGERS[trigger["type"]]
            metadata = trigger["metadata"]
            if unknown := set(metadata) - rules["allowed"]:
                errors.append(f"{where}: unknown metadata {sorted(unknown)}")
            if missing := rules["required"] - set(metadata):
                errors.append(f"{where}: missing {sorted(missing)}")
            for key in KEDA_NUMBERS & set(metadata):
                try:
                    float(metadata[key])
                except ValueError:
                    errors.append(f"{where}: {key} {metadata[key]!r} is not a number")
            params = set()
            if "authenticationRef" in trigger:
                auth = auths.get(trigger["authenticationRef"]["name"])
                if auth is None:
                    errors.append(
                        f"{where}: no TriggerAuthentication {trigger['authenticationRef']}"
                    )
                    continue
                params = {ref["parameter"] for ref in auth["spec"].get("secretTargetRef", [])}
                if unknown := params - rules["auth"]:
                    errors.append(f"{where}: {trigger['type']} takes no {sorted(unknown)}")
            if not (set(metadata) | params) & rules["connection"]:
                errors.append(f"{where}: nothing says where to connect")
    return errors


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_validate_against_the_schemas(overlay: str, version: str) -> None:
    docs = rendered(overlay)
    errors = {
        f"{doc['kind']}/{doc['metadata']['name']}": problems
        for doc in docs
        if (problems := schema_errors(doc, version))
    }
    assert not errors
    assert not trigger_errors(docs)
    kinds = {doc["kind"] for doc in docs}
    assert {"ScaledObject", "TriggerAuthentication", "Job", "PodDisruptionBudget"} <= kinds


def test_schema_checks_can_fail() -> None:
    docs = rendered("overlays/gpu")
    deployment = of_kind(docs, "Deployment")["kiln-api"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    assert schema_errors(deployment, K8S_VERSIONS[0])
    scaled = of_kind(docs, "ScaledObject")["kiln-worker"]
    scaled["spec"]["minReplicas"] = 0
    assert any("minReplicas" in e for e in schema_errors(scaled, K8S_VERSIONS[0]))
    scaled = of_kind(docs, "ScaledObject")["kiln-worker-gpu"]
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 1  # a number, not a string
    assert schema_errors(scaled, K8S_VERSIONS[0])
    scaled["spec"]["triggers"][0]["metadata"] = {"listName": "x", "listLenght": "1"}
    assert len(trigger_errors([scaled, *of_kind(docs, "TriggerAuthentication").values()])) == 2
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        schema_errors({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {}}, "1.33")


# --- Pod Security "restricted" -----------------------------------------------------------

# kubernetes.io/docs/concepts/security/pod-security-standards: the volume types restricted
# allows, and its checks (with the baseline ones these pods could trip).
RESTRICTED_VOLUMES = set(
    "configMap csi downwardAPI emptyDir ephemeral persistentVolumeClaim projected secret".split()
)


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    found = []
    context = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(field)
    for volume in pod.get("volumes", []):
        if kinds := set(volume) - {"name"} - RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: {sorted(kinds)}")
    pod_seccomp = context.get("seccompProfile", {}).get("type")
    if pod_seccomp not in {None, "RuntimeDefault", "Localhost"}:
        found.append(f"pod seccompProfile {pod_seccomp}")
    if context.get("runAsUser") == 0:
        found.append("pod runAsUser 0")
    containers = (
        pod.get("initContainers", []) + pod["containers"] + pod.get("ephemeralContainers", [])
    )
    for container in containers:
        name = container["name"]
        sc = container.get("securityContext", {})
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", context.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        if sc.get("seccompProfile", {}).get("type", pod_seccomp) not in {
            "RuntimeDefault",
            "Localhost",
        }:
            found.append(f"{name}: no RuntimeDefault or Localhost seccompProfile")
        capabilities = sc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if added := set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds {sorted(added)}")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
    return found


def pods(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{d['kind']}/{d['metadata']['name']}": p for d in docs for p in pod_specs(d)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_pod_security_restricted(overlay: str) -> None:
    found = pods(rendered(overlay))
    assert len(found) >= 4  # api, predict, worker(s), the migrations Job
    for name, pod in found.items():
        assert not restricted_violations(pod), name
        # Set on the pod, not left to each container.
        context = pod["securityContext"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert context["runAsNonRoot"] is True, name
        assert pod["automountServiceAccountToken"] is False, name
        # The images' own user, so files the image made are theirs.
        for container in pod.get("initContainers", []) + pod["containers"]:
            image = container["image"].split(":")[0].removeprefix("kiln/")
            assert context["runAsUser"] == context["runAsGroup"] == image_uid(image), name


def test_restricted_check_can_fail() -> None:
    pod = pods(rendered("base"))["Deployment/kiln-api"]
    assert not restricted_violations(pod)
    breaks = [
        lambda p: p["securityContext"].pop("seccompProfile"),
        lambda p: p["securityContext"].pop("runAsNonRoot"),
        lambda p: p["initContainers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
        lambda p: p["containers"][0]["securityContext"]["capabilities"].update(drop=[]),
        lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
        lambda p: p["containers"][0]["securityContext"].update(privileged=True),
        lambda p: p.update(hostNetwork=True),
        lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        lambda p: p["containers"][0]["securityContext"].update(runAsUser=0),
    ]
    for index, broken in enumerate(breaks):
        changed = copy.deepcopy(pod)
        broken(changed)
        assert restricted_violations(changed), index


# --- Workers: one queue, one Deployment, one ScaledObject ------------------------------

EXPECTED_QUEUES = {
    "base": {TRAINING_QUEUE},
    "overlays/dev": {TRAINING_QUEUE},
    "overlays/gpu": {TRAINING_QUEUE, GPU_QUEUE},
}


def worker_deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: doc
        for name, doc in of_kind(docs, "Deployment").items()
        if ("workers.worker", "app")
        in started_targets(
            command_text(doc["spec"]["template"]["spec"]["containers"][0].get("command"))
        )
    }


def consumed_queues(deployment: dict[str, Any]) -> list[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {var["name"]: var.get("value") for var in container.get("env", [])}
    names = env.get("WORKER_QUEUES", WorkerSettings.model_fields["worker_queues"].default)
    return [name.strip() for name in names.split(",") if name.strip()]


def config_value(docs: list[dict[str, Any]], key: str) -> str:
    (config,) = of_kind(docs, "ConfigMap").values()
    value: str = config["data"][key]
    return value


def triggers_by_type(scaled: dict[str, Any]) -> dict[str, dict[str, Any]]:
    triggers = {t["type"]: t for t in scaled["spec"]["triggers"]}
    assert len(triggers) == len(scaled["spec"]["triggers"])
    return triggers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_worker_queue_scales_from_zero_on_its_own_queue(overlay: str) -> None:
    docs = rendered(overlay)
    scaled = {
        s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(docs, "ScaledObject").values()
    }
    concurrency = config_value(docs, "WORKER_CONCURRENCY")
    redis_db = urlsplit(config_value(docs, "REDIS_URL")).path.lstrip("/") or "0"
    queues = set()
    for name, deployment in worker_deployments(docs).items():
        # One queue each: a worker on two queues could be sized from neither list.
        (queue,) = consumed_queues(deployment)
        assert queue not in queues, f"two Deployments consume {queue}"
        queues.add(queue)
        assert "replicas" not in deployment["spec"], "KEDA owns the replicas"
        assert name in scaled, f"no ScaledObject scales {name}"
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
        assert spec["minReplicaCount"] == 0
        assert spec["maxReplicaCount"] >= 1
        triggers = triggers_by_type(scaled[name])
        assert set(triggers) == {"redis", "postgresql"}
        lists = triggers["redis"]["metadata"]
        assert lists["listName"] == queue
        assert lists["databaseIndex"] == redis_db
        # One job per worker: the targets are the worker's concurrency.
        assert lists["listLength"] == concurrency
        assert lists["activationListLength"] == "0"
        jobs = triggers["postgresql"]["metadata"]
        assert jobs["targetQueryValue"] == concurrency
        assert jobs["activationTargetQueryValue"] == "0"
        assert int(concurrency) == int(
            deployment["spec"]["template"]["spec"]["containers"][0]["command"][-1]
        )
    assert queues == EXPECTED_QUEUES[overlay]
    # Every queue the API can send to has a worker where GPU workers exist.
    assert {queue_for({}), queue_for({"device": "gpu"})} <= EXPECTED_QUEUES["overlays/gpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaled_objects_and_their_authentications_resolve(overlay: str) -> None:
    docs = rendered(overlay)
    deployments = of_kind(docs, "Deployment")
    for name, scaled in of_kind(docs, "ScaledObject").items():
        assert scaled["spec"]["scaleTargetRef"]["name"] in deployments, name
        # No HorizontalPodAutoscaler of our own beside KEDA's on the same Deployment.
        for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
            assert hpa["spec"]["scaleTargetRef"]["name"] != scaled["spec"]["scaleTargetRef"]["name"]
    secrets = of_kind(docs, "Secret")
    for auth in of_kind(docs, "TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            if overlay == "overlays/dev":
                assert ref["key"] in secrets[ref["name"]]["data"], ref
            else:  # made by whoever runs the cluster, as the base's header says
                base = (K8S / "base" / "kustomization.yaml").read_text()
                assert f"`{ref['name']}`" in base, ref


def test_dev_keda_secret_points_where_the_pods_do() -> None:
    docs = rendered("overlays/dev")
    secrets = {
        name: {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
        for name, doc in of_kind(docs, "Secret").items()
    }
    keda = secrets["kiln-keda"]
    namespace = "kiln-dev"
    pods_redis = urlsplit(config_value(docs, "REDIS_URL"))
    host, port = keda["redis-address"].rsplit(":", 1)
    # KEDA connects from its own namespace: full Service names.
    assert host == f"{pods_redis.hostname}.{namespace}.svc.cluster.local"
    assert int(port) == (pods_redis.port or 6379)
    pods_db = urlsplit(secrets["kiln-secrets"]["DATABASE_URL"])
    keda_db = urlsplit(keda["postgresql-connection"])
    assert keda_db.scheme == "postgresql", "libpq's URL, not SQLAlchemy's"
    assert keda_db.hostname == f"{pods_db.hostname}.{namespace}.svc.cluster.local"
    assert (keda_db.port, keda_db.path) == (pods_db.port, pods_db.path)


REDIS_TEST_URL = os.environ.get("KILN_TEST_KEDA_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.mark.parametrize("spec", [{}, {"device": "auto"}, {"device": "gpu"}])
def test_keda_watches_the_redis_list_celery_sends_the_job_to(
    tmp_path: Path, spec: dict[str, str]
) -> None:
    client = redis.Redis.from_url(REDIS_TEST_URL, socket_timeout=3)
    require_server("Redis on 127.0.0.1:6379", client.ping)
    queue = queue_for(spec)
    docs = rendered("overlays/gpu")
    scaled = {
        triggers_by_type(s)["redis"]["metadata"]["listName"]: s
        for s in of_kind(docs, "ScaledObject").values()
        if "redis" in triggers_by_type(s)
    }
    assert queue in scaled, f"no ScaledObject watches {queue}"
    list_name = triggers_by_type(scaled[queue])["redis"]["metadata"]["listName"]
    job_id = uuid.uuid4().hex
    assert Dispatcher(make_celery(REDIS_TEST_URL, tmp_path)).send(job_id, spec)
    mine = [m for m in client.lrange(list_name, 0, -1) if job_id in m.decode()]
    try:
        assert len(mine) == 1, f"the message is not in the list {list_name}"
        message = json.loads(mine[0])
        assert message["headers"]["task"] == TASK_TRAIN
    finally:
        for item in mine:
            client.lrem(list_name, 1, item)


def test_keda_postgresql_queries_count_the_active_jobs_of_their_queue(postgres_url: str) -> None:
    docs = rendered("overlays/gpu")
    queries = {
        triggers_by_type(s)["redis"]["metadata"]["listName"]: triggers_by_type(s)["postgresql"][
            "metadata"
        ]["query"]
        for s in of_kind(docs, "ScaledObject").values()
        if "postgresql" in triggers_by_type(s)
    }
    assert set(queries) == {TRAINING_QUEUE, GPU_QUEUE}
    engine = make_engine(postgres_url)
    with engine.connect() as conn:
        outer = conn.begin()
        try:
            before = {queue: conn.execute(text(q)).scalar_one() for queue, q in queries.items()}
            session = Session(bind=conn, join_transaction_mode="create_savepoint")
            expected = dict.fromkeys(queries, 0)
            specs = [SPEC, {**SPEC, "device": "auto"}, {**SPEC, "device": "gpu"}]
            for spec in specs:
                for state in ("queued", "running", "succeeded", "failed", "cancelled"):
                    make_job(session, spec=spec, state=state)
                    if state in {"queued", "running"}:
                        expected[queue_for(spec)] += 1
            session.flush()
            after = {queue: conn.execute(text(q)).scalar_one() for queue, q in queries.items()}
            assert {queue: after[queue] - before[queue] for queue in queries} == expected
            assert expected == {TRAINING_QUEUE: 4, GPU_QUEUE: 2}
            session.close()
        finally:
            outer.rollback()
    engine.dispose()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_shut_down_warm(overlay: str, tmp_path: Path) -> None:
    conf = make_celery(None, tmp_path).conf
    # What makes a killed job come back rather than vanish.
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    workers = worker_deployments(rendered(overlay))
    shapes = set()
    for name, deployment in workers.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # Exec form, so celery is PID 1 and gets the SIGTERM that starts the warm shutdown.
        assert container["command"][0] == "celery", name
        assert pod["terminationGracePeriodSeconds"] >= 3600, name
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
        assert annotations["karpenter.sh/do-not-disrupt"] == "true"
        # The GPU worker is a copy of the base one: kept in step but for image, queue, GPU.
        shape = copy.deepcopy(pod)
        shape.pop("nodeSelector", None)
        shape.pop("tolerations", None)
        (kept,) = shape["containers"]
        for key in ("image", "env"):
            kept.pop(key)
        kept["resources"]["limits"].pop("nvidia.com/gpu", None)
        shapes.add(json.dumps(shape, sort_keys=True))
    assert len(shapes) == 1


# --- Disruption budgets ------------------------------------------------------------------

NEEDS_BUDGET = {"kiln-api", "kiln-predict"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise Unsupported(f"selector {selector}")
    return selector["matchLabels"].items() <= labels.items()


def min_replicas(docs: list[dict[str, Any]], name: str) -> int:
    for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
        if hpa["spec"]["scaleTargetRef"]["name"] == name:
            return int(hpa["spec"]["minReplicas"])
    for scaled in of_kind(docs, "ScaledObject").values():
        if scaled["spec"]["scaleTargetRef"]["name"] == name:
            return int(scaled["spec"]["minReplicaCount"])
    return int(of_kind(docs, "Deployment")[name]["spec"].get("replicas", 1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_deployments_have_disruption_budgets(overlay: str) -> None:
    docs = rendered(overlay)
    budgets = of_kind(docs, "PodDisruptionBudget")
    deployments = of_kind(docs, "Deployment")
    for name in NEEDS_BUDGET:
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        (budget,) = [b for b in budgets.values() if selects(b["spec"]["selector"], labels)]
        spec = budget["spec"]
        # At one replica (dev) a drain still goes through; at the minimum of the others, one
        # pod keeps serving.
        assert "minAvailable" not in spec
        assert spec["maxUnavailable"] == 1
        if overlay != "overlays/dev":
            assert min_replicas(docs, name) - spec["maxUnavailable"] >= 1, name
    for budget in budgets.values():
        chosen = [
            name
            for name, d in deployments.items()
            if selects(budget["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(chosen) == 1, (budget["metadata"]["name"], chosen)
        assert chosen[0] in NEEDS_BUDGET


# --- Migrations --------------------------------------------------------------------------


def cli_has(*path: str) -> bool:
    import typer.main

    from services.cli import app

    command: Any = typer.main.get_command(app)
    for name in path:
        command = getattr(command, "commands", {}).get(name)
        if command is None:
            return False
    return True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_run_as_a_job(overlay: str) -> None:
    docs = rendered(overlay)
    (job,) = of_kind(docs, "Job").values()
    assert job["spec"].get("parallelism", 1) == job["spec"].get("completions", 1) == 1
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    (container,) = pod["containers"]
    command = container["command"] + container.get("args", [])
    assert command == ["kiln", "db", "upgrade"]
    assert cli_has("db", "upgrade")
    assert not cli_has("db", "no-such-command")
    api = of_kind(docs, "Deployment")["kiln-api"]["spec"]["template"]["spec"]["containers"][0]
    # The API's own image and tag, and the same database.
    assert container["image"] == api["image"]
    assert container["envFrom"] == api["envFrom"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_does_not_migrate_and_can_scale(overlay: str) -> None:
    deployment = of_kind(rendered(overlay), "Deployment")["kiln-api"]
    pod = deployment["spec"]["template"]["spec"]
    for container in pod.get("initContainers", []) + pod["containers"]:
        text_ = command_text(container.get("command")) + command_text(container.get("args"))
        assert "upgrade" not in text_, container["name"]
    (serving,) = [c for c in pod["containers"] if c["name"] == "kiln"]
    # Without a command the image's CMD would run `kiln db upgrade` first.
    assert "kiln db upgrade" in dockerfile_commands(DOCKERFILES["api"])
    assert started_targets(command_text(serving["command"])) == {("services.api.app", "app")}
    if overlay != "overlays/dev":
        assert deployment["spec"]["replicas"] >= 2


def wait_for_schema_script() -> str:
    pod = of_kind(rendered("base"), "Deployment")["kiln-api"]["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][:2] == ["python", "-c"]
    script: str = init["command"][2]
    return script


def test_api_waits_for_the_schema_with_code_that_exists() -> None:
    tree = ast.parse(wait_for_schema_script())
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imports
    for node in imports:
        assert node.module is not None
        for alias in node.names:
            assert_module_defines(node.module, alias.name)


@pytest.mark.parametrize("migrated", [True, False])
def test_api_wait_for_schema_waits_until_migrated(tmp_path: Path, migrated: bool) -> None:
    url = f"sqlite:///{tmp_path / 'kiln.db'}"
    if migrated:
        upgrade(url)
    env = {**os.environ, "DATABASE_URL": url, "KILN_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", wait_for_schema_script()],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if migrated:
            assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        else:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "waiting for the kiln-migrate Job" in line, (
                proc.stderr.read() if proc.stderr else ""
            )
            with pytest.raises(subprocess.TimeoutExpired):  # and goes on waiting
                proc.wait(timeout=2)
    finally:
        proc.kill()
        proc.wait()


# --- The GPU overlay ---------------------------------------------------------------------


def test_gpu_overlay_puts_predictors_and_gpu_jobs_on_gpu_nodes() -> None:
    docs = rendered("overlays/gpu")
    deployments = of_kind(docs, "Deployment")
    images = {
        "kiln-predict": "kiln/predict:0.1.0-gpu",
        "kiln-worker-gpu": "kiln/worker:0.1.0-gpu",
        "kiln-worker": "kiln/worker:0.1.0",
        "kiln-api": "kiln/api:0.1.0",
    }
    for name, image in images.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == image, name
        gpu = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        if name in {"kiln-predict", "kiln-worker-gpu"}:
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
            assert gpu == 1, name
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
                "tolerations"
            ]
        else:
            assert "nodeSelector" not in pod, name
            assert gpu is None, name
    (predictor,) = deployments["kiln-predict"]["spec"]["template"]["spec"]["containers"]
    assert {"name": "PREDICT_DEVICE", "value": "auto"} in predictor["env"]
    assert config_value(docs, "PREDICT_DEVICE") == "cpu"
    (job,) = of_kind(docs, "Job").values()
    assert "nodeSelector" not in job["spec"]["template"]["spec"]


def test_predict_hpa() -> None:
    (hpa,) = [doc for _, doc in k8s_docs() if doc["kind"] == "HorizontalPodAutoscaler"]
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "kiln-predict",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    (metric,) = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert "cpu" in dict(k8s_containers())["kiln-predict"]["resources"]["requests"]
    for overlay in ("base", "overlays/dev"):
        assert "kiln-predict" in of_kind(rendered(overlay), "HorizontalPodAutoscaler")


def exported_series() -> str:
    registry = CollectorRegistry()
    metrics = PredictMetrics(registry)
    metrics.observe("iris", 1, "infer", 200, 0.002)
    metrics.observe("", 0, "health", 200, 0.0001)
    return generate_latest(registry).decode()


def test_gpu_predictors_scale_on_requests_in_flight_not_cpu() -> None:
    docs = rendered("overlays/gpu")
    for hpa in of_kind(docs, "HorizontalPodAutoscaler").values():
        assert hpa["spec"]["scaleTargetRef"]["name"] != "kiln-predict", "a CPU autoscaler"
    (scaled,) = [
        s
        for s in of_kind(docs, "ScaledObject").values()
        if s["spec"]["scaleTargetRef"]["name"] == "kiln-predict"
    ]
    spec = scaled["spec"]
    assert spec["minReplicaCount"] >= 2, "one pod left serving through a drain"
    assert spec["fallback"]["replicas"] >= spec["minReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"  # not cpu or memory
    assert trigger.get("metricType", "AverageValue") == "AverageValue"  # per pod
    metadata = trigger["metadata"]
    assert metadata["ignoreNullValues"] == "false"
    query = metadata["query"]
    # Little's law: the rate of the summed request durations is the mean in flight.
    (series,) = set(re.findall(r"\b(kiln_\w+)\{", query))
    assert series == "kiln_predict_request_duration_seconds_sum"
    assert re.search(rf"rate\({series}\{{", query)
    exposition = exported_series()
    # The predictor exports that series, with the labels the query filters on (the
    # namespace and pod labels come from the scrape).
    matchers = set(re.findall(r'(\w+)\s*(?:=~|!=|=)\s*"[^"]*"', query))
    scraped = {"namespace", "pod"}
    assert "model" in matchers
    for label in matchers - scraped:
        assert re.search(rf'^{series}\{{[^}}]*\b{label}="', exposition, re.M), label
    assert re.search(rf'^{series}\{{[^}}]*model="iris"', exposition, re.M)
    (pod_pattern,) = re.findall(r'pod\s*=~\s*"([^"]*)"', query)
    assert re.fullmatch(pod_pattern, "kiln-predict-7c9f8d6b5-x2x9q")
    assert not re.fullmatch(pod_pattern, "kiln-api-7c9f8d6b5-x2x9q")
    # The predictor pods say where to scrape them, and that route exists.
    template = of_kind(docs, "Deployment")["kiln-predict"]["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    (container,) = template["spec"]["containers"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]
    assert f'"{annotations["prometheus.io/path"]}"' in route_paths()


# --- The raw files -----------------------------------------------------------------------


def test_k8s_yaml_parses_and_has_the_layout() -> None:
    names = {str(p.relative_to(K8S)) for p in K8S_YAMLS}
    assert {
        "base/kustomization.yaml",
        "base/api.yaml",
        "base/migrate.yaml",
        "base/predict.yaml",
        "base/worker.yaml",
        "base/hpa.yaml",
        "base/keda.yaml",
        "base/pdb.yaml",
        "overlays/dev/kustomization.yaml",
        "overlays/gpu/kustomization.yaml",
        "overlays/gpu/gpu-patch.yaml",
        "overlays/gpu/worker-gpu.yaml",
        "overlays/gpu/predict-keda.yaml",
    } <= names
    for path, doc in k8s_docs():
        assert isinstance(doc, dict), path
        assert "kind" in doc, path


def test_kustomizations_name_existing_files() -> None:
    for path in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        for entry in doc.get("resources", []):
            assert (path.parent / entry).exists(), f"{path}: {entry}"
        for patch in doc.get("patches", []):
            if "path" in patch:
                assert (path.parent / patch["path"]).is_file(), f"{path}: {patch['path']}"


def test_k8s_config_keys_are_settings_fields() -> None:
    doc = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    (config,) = [g for g in doc["configMapGenerator"] if g["name"] == "kiln-config"]
    keys = {literal.split("=", 1)[0] for literal in config["literals"]}
    known = set().union(*(env_names(s) for s in ALL_SETTINGS))
    assert keys <= known, sorted(keys - known)


def test_k8s_env_names_are_settings_fields() -> None:
    known = set().union(*(env_names(s) for s in ALL_SETTINGS))
    for overlay in OVERLAYS:
        for name, pod in pods(rendered(overlay)).items():
            for container in pod.get("initContainers", []) + pod["containers"]:
                env = {var["name"] for var in container.get("env", [])}
                assert env <= known, (name, sorted(env - known))


def test_k8s_containers_read_config_and_secret_and_mount_artifacts() -> None:
    containers = dict(k8s_containers())
    assert set(containers) == {"kiln-api", "kiln-predict", "kiln-worker", "kiln-worker-gpu"}
    for name, container in containers.items():
        refs = {
            (kind, ref["name"]) for source in container["envFrom"] for kind, ref in source.items()
        }
        assert refs == {("configMapRef", "kiln-config"), ("secretRef", "kiln-secrets")}, name
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/var/lib/kiln/artifacts" in mounts, name
    claims = [doc for _, doc in k8s_docs() if doc["kind"] == "PersistentVolumeClaim"]
    assert any(
        c["metadata"]["name"] == "kiln-artifacts" and c["spec"]["accessModes"] == ["ReadWriteMany"]
        for c in claims
    )


@pytest.mark.parametrize(
    ("deployment", "readiness", "liveness"),
    [("kiln-api", "/healthz", "/healthz"), ("kiln-predict", "/v2/health/ready", "/v2/health/live")],
)
def test_k8s_probes_hit_routes(deployment: str, readiness: str, liveness: str) -> None:
    container = dict(k8s_containers())[deployment]
    assert container["readinessProbe"]["httpGet"]["path"] == readiness
    assert container["livenessProbe"]["httpGet"]["path"] == liveness
    routes = route_paths()
    assert f'"{readiness}"' in routes
    assert f'"{liveness}"' in routes


def test_gpu_patch() -> None:
    patch = yaml.safe_load((K8S / "overlays" / "gpu" / "gpu-patch.yaml").read_text())
    pod = patch["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    # The patch merges by container name, so it must match the base containers'.
    containers = dict(k8s_containers())
    assert (
        containers["kiln-predict"]["name"]
        == containers["kiln-worker-gpu"]["name"]
        == container["name"]
    )
