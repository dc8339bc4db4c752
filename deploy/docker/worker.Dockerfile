# syntax=docker/dockerfile:1
# The Celery training worker. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t kiln/worker .
# The only image with the `train` extra (TensorFlow CPU, tf2onnx, onnx).
#
# GPU: the gpu overlay's kiln-worker-gpu (the training-gpu queue) runs the `-gpu` tag, built
# with `--build-arg KILN_GPU=1`, which replaces tensorflow-cpu with tensorflow[and-cuda]
# (CUDA 12 from NVIDIA's pip wheels). The exported ONNX is the same either way.

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
RUN pip install --no-cache-dir ".[train]"
RUN if [ "$KILN_GPU" = "1" ]; then \
        pip uninstall -y tensorflow-cpu \
        && pip install --no-cache-dir "tensorflow[and-cuda]==2.21.*"; \
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

# Its one port is Prometheus metrics (WORKER_METRICS_PORT). No HEALTHCHECK: `celery
# inspect ping` would import the app and query the broker on every probe. A crashed worker exits and
# the restart policy brings it back; a job it held is taken over once its heartbeat
# goes stale (JOB_HEARTBEAT_TIMEOUT_S on the API).
# One job at a time, each in a fresh child (WORKER_MAX_TASKS_PER_CHILD=1) so TensorFlow's
# memory is returned after every job. The parent never imports TensorFlow.
# No -Q: the worker consumes the queues in WORKER_QUEUES (default "training").
ENV WORKER_METRICS_HOST=0.0.0.0
EXPOSE 9101
CMD ["celery", "-A", "workers.worker", "worker", "--loglevel", "INFO", "--concurrency", "1"]
