# The tracking server image for ECS: pinned MLflow, the PostgreSQL driver, and this package's
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

# [auth]: `--app-name basic-auth` (tracking.auth: basic) needs Flask-WTF
RUN pip install \
        "mlflow[auth]==${MLFLOW_VERSION}" \
        "psycopg[binary]>=3.1" \
        "boto3>=1.34" \
        "prometheus-flask-exporter>=0.23" \
        "pyyaml>=6.0" \
        "pydantic>=2.7,<3" \
        "rich>=13.7"

COPY pyproject.toml README.md /tmp/src/
COPY infra /tmp/src/infra
# --no-deps: the package also declares the deploy tooling (pulumi, pulumi-aws), which no server needs
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src

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
