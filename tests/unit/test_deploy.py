"""The deployment files agree with the code: no Docker engine or cluster needed.

Checks what reading can check: the YAML parses, every Dockerfile compose names exists,
every module a command starts is there, only the worker image installs the `train`
extra, every env name is a settings field, and every probe path is a route.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.settings import ApiSettings, PredictSettings
from workers.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"
DOCKERFILES = {name: DOCKER / f"{name}.Dockerfile" for name in ("api", "predict", "worker")}
K8S_YAMLS = sorted(K8S.rglob("*.yaml"))

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
        ("worker", ("workers.worker", "app"), None),
    ],
)
def test_dockerfile_starts_the_right_process(
    name: str, target: tuple[str, str], port: int | None
) -> None:
    path = DOCKERFILES[name]
    commands = dockerfile_commands(path)
    assert started_targets(commands) == {target}
    lines = dockerfile_instructions(path)
    exposed = {int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == ({port} if port else set())
    if port:
        assert f"--port {port}" in commands.replace('", "', " ")
        assert "--factory" in commands


def test_api_image_migrates_before_serving() -> None:
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


def test_gpu_pin_check_can_fail() -> None:
    unpinned = pip_requirements(
        ['RUN pip install --no-cache-dir "onnxruntime-gpu[cuda,cudnn]>=1.20"']
    )
    assert unpinned == {"onnxruntime-gpu": (">=", "1.20")}
    starred = pip_requirements(['RUN pip install "nvidia-cudnn-cu13==9.*" && pip install x==1'])
    assert starred == {"nvidia-cudnn-cu13": ("==", "9.*"), "x": ("==", "1")}


# --- Kubernetes -----------------------------------------------------------------------


def test_k8s_yaml_parses_and_has_the_layout() -> None:
    names = {str(p.relative_to(K8S)) for p in K8S_YAMLS}
    assert {
        "base/kustomization.yaml",
        "base/api.yaml",
        "base/predict.yaml",
        "base/worker.yaml",
        "base/hpa.yaml",
        "overlays/dev/kustomization.yaml",
        "overlays/gpu/kustomization.yaml",
        "overlays/gpu/gpu-patch.yaml",
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


def test_k8s_containers_read_config_and_secret_and_mount_artifacts() -> None:
    containers = dict(k8s_containers())
    assert set(containers) == {"kiln-api", "kiln-predict", "kiln-worker"}
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


def test_gpu_patch() -> None:
    patch = yaml.safe_load((K8S / "overlays" / "gpu" / "gpu-patch.yaml").read_text())
    pod = patch["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"name": "PREDICT_DEVICE", "value": "auto"} in container["env"]
    # The patch merges by container name, so it must match the base containers'.
    containers = dict(k8s_containers())
    assert (
        containers["kiln-predict"]["name"] == containers["kiln-worker"]["name"] == container["name"]
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", ["base", "overlays/dev", "overlays/gpu"])
def test_kustomize_builds(overlay: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"kiln-api", "kiln-predict", "kiln-worker"}
    if overlay == "overlays/gpu":
        for name in ("kiln-predict", "kiln-worker"):
            pod = deployments[name]["spec"]["template"]["spec"]
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert "nodeSelector" not in deployments["kiln-api"]["spec"]["template"]["spec"]
