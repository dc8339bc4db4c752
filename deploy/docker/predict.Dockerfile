# syntax=docker/dockerfile:1
# The prediction service (Open Inference Protocol v2). Build from the repository root:
#   docker build -f deploy/docker/predict.Dockerfile -t kiln/predict .
# Installed WITHOUT the `train` extra: this image has no TensorFlow, tf2onnx or onnx.
#
# GPU: the stage `gpu` of this file, the image the gpu overlay (deploy/k8s/overlays/gpu) runs:
#   docker build -f deploy/docker/predict.Dockerfile --target gpu -t kiln/predict:0.1.0-gpu .
# onnxruntime-gpu in place of onnxruntime, with the CUDA and cuDNN libraries it was built
# for (stage gpu-build); the node supplies only the driver, whose minimum the gpu overlay
# states. With PREDICT_DEVICE=auto the predictor uses CUDA when ONNX Runtime lists it.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY services ./services
COPY workers ./workers
COPY registry ./registry
COPY training ./training
RUN pip install --no-cache-dir .

# onnxruntime-gpu 1.26.0 is the newest CUDA 12 build on PyPI (1.27 and later are CUDA 13
# builds, which need an R580 driver); `onnxruntime.print_debug_info()` says it was built
# with CUDA 12.8. Its [cuda,cudnn] extras accept any CUDA 12.x and cuDNN 9.x wheel, so each
# NVIDIA wheel is pinned as well: CUDA 12.8 Update 1 and cuDNN 9.10, the whole set that
# those extras pull in. Both ORT wheels provide the `onnxruntime` module, so the CPU one
# goes first.
FROM build AS gpu-build
RUN pip uninstall -y onnxruntime \
    && pip install --no-cache-dir \
        "onnxruntime-gpu[cuda,cudnn]==1.26.0" \
        "nvidia-cuda-runtime-cu12==12.8.90" \
        "nvidia-cuda-nvrtc-cu12==12.8.93" \
        "nvidia-cublas-cu12==12.8.4.1" \
        "nvidia-cufft-cu12==11.3.3.83" \
        "nvidia-curand-cu12==10.3.9.90" \
        "nvidia-nvjitlink-cu12==12.8.93" \
        "nvidia-cudnn-cu12==9.10.2.21"

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KILN_HOME=/var/lib/kiln \
    ARTIFACT_DIR=/var/lib/kiln/artifacts
RUN groupadd --system --gid 10001 kiln \
    && useradd --system --uid 10001 --gid kiln --home-dir /var/lib/kiln --shell /usr/sbin/nologin kiln \
    && mkdir -p /var/lib/kiln/artifacts \
    && chown -R kiln:kiln /var/lib/kiln
WORKDIR /var/lib/kiln
USER 10001:10001

EXPOSE 8001
# Ready, not just live: the registry is reachable. slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/v2/health/ready', timeout=4)"]

# One process per container (scale with replicas); no access log: it costs more than the model.
CMD ["uvicorn", "services.predict.app:app", "--factory", "--host", "0.0.0.0", "--port", "8001", "--no-access-log"]

# The NVIDIA wheels' libraries are not on the loader's path, and ONNX Runtime does not
# look for them there: without LD_LIBRARY_PATH it lists the CUDA provider, fails to load
# it (libcublasLt.so.12 not found) and serves on the CPU.
FROM runtime AS gpu
COPY --from=gpu-build /opt/venv /opt/venv
ENV LD_LIBRARY_PATH=/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cuda_runtime/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cudnn/lib:/opt/venv/lib/python3.11/site-packages/nvidia/cufft/lib:/opt/venv/lib/python3.11/site-packages/nvidia/curand/lib:/opt/venv/lib/python3.11/site-packages/nvidia/nvjitlink/lib
# Checked without a GPU, so that a missing library fails the build, not the first request:
# the GPU wheel is the `onnxruntime` that imports, and every library its CUDA provider
# links is found (libcuda, the driver's, is not one of them).
RUN python -c "import onnxruntime as ort; assert 'CUDAExecutionProvider' in ort.get_available_providers(), ort.get_available_providers()" \
    && out="$(ldd /opt/venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so)" \
    && ! printf '%s\n' "$out" | grep "not found"

# The last stage is the default target: the CPU image.
FROM runtime AS cpu
COPY --from=build /opt/venv /opt/venv
