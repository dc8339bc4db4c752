# syntax=docker/dockerfile:1
# The prediction service (Open Inference Protocol v2). Build from the repository root:
#   docker build -f deploy/docker/predict.Dockerfile -t kiln/predict .
# Installed WITHOUT the `train` extra: this image has no TensorFlow, tf2onnx or onnx.
#
# GPU: there is no separate Dockerfile. The gpu overlay (deploy/k8s/overlays/gpu) runs the
# `-gpu` tag, built from this file with `--build-arg KILN_GPU=1`, which swaps onnxruntime
# for onnxruntime-gpu (CUDA 12 and cuDNN 9 from NVIDIA's pip wheels; the node supplies the
# driver). With PREDICT_DEVICE=auto the predictor uses CUDA when ONNX Runtime lists it.

FROM python:3.11-slim AS build
ARG KILN_GPU=0
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
# Both wheels provide the `onnxruntime` module, so the CPU one must go first.
RUN if [ "$KILN_GPU" = "1" ]; then \
        pip uninstall -y onnxruntime \
        && pip install --no-cache-dir "onnxruntime-gpu[cuda,cudnn]>=1.20"; \
    fi

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KILN_HOME=/var/lib/kiln \
    ARTIFACT_DIR=/var/lib/kiln/artifacts
RUN groupadd --system --gid 10001 kiln \
    && useradd --system --uid 10001 --gid kiln --home-dir /var/lib/kiln --shell /usr/sbin/nologin kiln \
    && mkdir -p /var/lib/kiln/artifacts \
    && chown -R kiln:kiln /var/lib/kiln
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/kiln
USER 10001:10001

EXPOSE 8001
# Ready, not just live: the registry is reachable. slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/v2/health/ready', timeout=4)"]

# One process per container (scale with replicas); no access log: it costs more than the model.
CMD ["uvicorn", "services.predict.app:app", "--factory", "--host", "0.0.0.0", "--port", "8001", "--no-access-log"]
