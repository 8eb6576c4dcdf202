# The tracking server image for ECS: pinned MLflow, this package's [server] extra, and its
# entrypoint, which composes the database URIs from DB_* variables (see infra/runtime/entrypoint.py).
#   docker build --build-arg MLFLOW_VERSION=3.17.2 -t mlflow-infra .
#   docker run ... mlflow-infra                 the API/UI server (ECS overrides the command)
#   docker run ... mlflow-infra migrate         mlflow db upgrade, then the index migration
FROM python:3.11-slim

# must match tracking.mlflow_version of the environments that run this image
ARG MLFLOW_VERSION=3.17.2

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package's own [server] extra is the one list of what the server needs (pyproject.toml):
# MLflow with [auth], the PostgreSQL driver, boto3, the Prometheus exporter; no deploy tooling.
# MLflow is pinned here, inside the extra's range, so the image runs the planned version.
COPY pyproject.toml README.md /tmp/src/
COPY infra /tmp/src/infra
RUN pip install "mlflow[auth]==${MLFLOW_VERSION}" "/tmp/src[server]" && rm -rf /tmp/src

RUN groupadd --system --gid 10001 mlflow \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/mlflow --shell /usr/sbin/nologin mlflow
# numeric, so runAsNonRoot-style checks can verify it without reading /etc/passwd
USER 10001:10001
WORKDIR /home/mlflow

EXPOSE 5000
# slim has no curl; /health is exempt from MLflow's host check
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["mlflow-infra-entrypoint"]
CMD ["server", "--", "mlflow", "server", "--host", "0.0.0.0", "--port", "5000"]
