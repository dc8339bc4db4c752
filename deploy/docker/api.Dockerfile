# syntax=docker/dockerfile:1
# The control-plane API. Build from the repository root:
#   docker build -f deploy/docker/api.Dockerfile -t kiln/api .
# Installed WITHOUT the `train` extra: this image has no TensorFlow, tf2onnx or onnx.

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

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KILN_HOME=/var/lib/kiln \
    ARTIFACT_DIR=/var/lib/kiln/artifacts
# The artifact folder is created here, owned by the service user, so that a fresh named
# volume mounted on it starts with that owner (Docker copies it into an empty volume).
RUN groupadd --system --gid 10001 kiln \
    && useradd --system --uid 10001 --gid kiln --home-dir /var/lib/kiln --shell /usr/sbin/nologin kiln \
    && mkdir -p /var/lib/kiln/artifacts \
    && chown -R kiln:kiln /var/lib/kiln
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/kiln
USER 10001:10001

EXPOSE 8000
# slim has no curl; urlopen raises (exit 1) on a refused connection or a non-2xx answer.
# The start period covers `kiln db upgrade`, which runs before uvicorn listens.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# Migrations first (Alembic, idempotent at head), then exec so uvicorn is PID 1 and gets SIGTERM.
# That is for one API (docker compose). On Kubernetes the Deployment runs uvicorn alone and
# the kiln-migrate Job migrates (deploy/k8s/base/migrate.yaml), so replicas do not race.
CMD ["sh", "-c", "kiln db upgrade && exec uvicorn services.api.app:app --factory --host 0.0.0.0 --port 8000"]
