"""Rendered artifacts of a plan, as plain data: ECS container definitions, EC2 user data, names.

Pure functions of the plan and a few runtime strings (endpoints, ARNs), so tests can check them
against botocore's service models and `bash -n` without Pulumi. The components only call these.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ..planning.plan import CapacityPlan
from ..planning.server_command import PORT, ServerSettings

DB_NAME = "mlflow"
DB_USERNAME = "mlflow"
ENTRYPOINT = "mlflow-infra-entrypoint"
LOG_RETENTION_DAYS = 30
# Health check through Python: the slim image has no curl.
HEALTH_COMMAND = ("python -c \"import urllib.request; "
                  f"urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=3)\"")


@dataclass(frozen=True)
class Runtime:
    """Values only known once resources exist (Pulumi outputs, resolved)."""

    image: str
    region: str
    db_host: str
    db_port: int
    replica_host: str | None
    secret_arn: str
    log_group: str
    artifacts_destination: str
    load_balancer_host: str


def server_for(plan: CapacityPlan, role: str) -> ServerSettings:
    return plan.tracking.api_server if role == "api" else plan.tracking.ui_server


def database_environment(rt: Runtime, role: str, ui_on_replica: bool) -> dict[str, str]:
    env = {"DB_HOST": rt.db_host, "DB_PORT": str(rt.db_port), "DB_NAME": DB_NAME, "DB_SSLMODE": "require"}
    if role == "ui" and ui_on_replica and rt.replica_host:
        env["DB_REPLICA_HOST"] = rt.replica_host
    return env


def server_environment(plan: CapacityPlan, role: str, rt: Runtime) -> dict[str, str]:
    """The server's plain environment on ECS and EC2 alike: the plan's, the database, the placeholders."""
    ui_on_replica = bool(plan.tracking.ui_reads_from_replica.value)
    return {**server_for(plan, role).environment, **database_environment(rt, role, ui_on_replica),
            "MLFLOW_ARTIFACTS_DESTINATION": rt.artifacts_destination,
            "MLFLOW_LOAD_BALANCER_HOST": rt.load_balancer_host}


def secrets(secret_arn: str) -> list[dict[str, str]]:
    """The RDS-managed master secret's JSON keys, injected by ECS: never in plain environment."""
    return [{"name": "DB_USERNAME", "valueFrom": f"{secret_arn}:username::"},
            {"name": "DB_PASSWORD", "valueFrom": f"{secret_arn}:password::"}]


def _pairs(env: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def container_definitions(plan: CapacityPlan, role: str, rt: Runtime) -> list[dict]:
    """The task's containers: the migration (`mlflow db upgrade` + index migration) and the server,
    which starts only after the migration exits 0."""
    server = server_for(plan, role)
    env = server_environment(plan, role, rt)
    logs = {"logDriver": "awslogs", "options": {"awslogs-group": rt.log_group, "awslogs-region": rt.region,
                                                  "awslogs-stream-prefix": role}}
    migrate = {
        "name": "migrate",
        "image": rt.image,
        "essential": False,
        "entryPoint": [ENTRYPOINT],
        "command": ["migrate"],
        "environment": _pairs(database_environment(rt, "api", False)),
        "secrets": secrets(rt.secret_arn),
        "logConfiguration": logs,
    }
    main = {
        "name": "mlflow",
        "image": rt.image,
        "essential": True,
        "entryPoint": [ENTRYPOINT],
        "command": ["server", "--", *server.command],
        "environment": _pairs(env),
        "secrets": secrets(rt.secret_arn),
        "portMappings": [{"containerPort": PORT, "protocol": "tcp"}],
        "ulimits": [{"name": "nofile", "softLimit": server.nofile, "hardLimit": server.nofile}],
        "healthCheck": {"command": ["CMD-SHELL", HEALTH_COMMAND], "interval": 15, "timeout": 5,
                        "retries": 3, "startPeriod": 90},
        "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}],
        "logConfiguration": logs,
    }
    return [migrate, main]


def task_size(plan: CapacityPlan, role: str) -> tuple[str, str]:
    """Fargate cpu units and memory MiB, as the API wants them (strings)."""
    fleet = plan.tracking.api if role == "api" else plan.tracking.ui
    return str(int(fleet.vcpu * 1024)), str(int(fleet.memory_gib * 1024))


# ---------------------------------------------------------------------------------------------
# EC2: user data with a virtualenv and systemd units carrying the same flags and limits
# ---------------------------------------------------------------------------------------------

def user_data(plan: CapacityPlan, role: str, rt: Runtime, package_spec: str) -> str:
    """cloud-init shell script for `tracking.compute: ec2` (Amazon Linux 2023, arm64).

    `package_spec` is what pip installs for this project's entrypoint (a wheel URL or
    `mlflow-infra==X`); the server itself runs the pinned MLflow from the same virtualenv.
    """
    server = server_for(plan, role)
    # no ECS secret injection on EC2: the entrypoint reads the secret with the instance role
    env = {**server_environment(plan, role, rt), "DB_SECRET_ARN": rt.secret_arn, "AWS_DEFAULT_REGION": rt.region}
    env_file = "\n".join(f"{k}={v}" for k, v in sorted(env.items()))
    command = " ".join(shlex.quote(part) for part in server.command)
    # the same set as the Dockerfile; [auth] serves tracking.auth: basic
    packages = " ".join(shlex.quote(p) for p in (
        f"mlflow[auth]=={plan.tracking.mlflow_version}", "psycopg[binary]>=3.1", "boto3>=1.34", "prometheus-flask-exporter>=0.23",
        "pyyaml>=6.0", "pydantic>=2.7,<3", "rich>=13.7"))
    return f"""#!/bin/bash
# MLflow {role} server for {plan.environment}: rendered by mlflow-infra from the capacity plan.
set -euo pipefail
dnf install -y python3.11 python3.11-pip
id mlflow >/dev/null 2>&1 || useradd --system --home-dir /opt/mlflow --shell /sbin/nologin mlflow
python3.11 -m venv /opt/mlflow/venv
/opt/mlflow/venv/bin/pip install --quiet {packages}
# --no-deps: the entrypoint needs none of the deploy tooling (pulumi) the package also declares
/opt/mlflow/venv/bin/pip install --quiet --no-deps {shlex.quote(package_spec)}
install -d -o mlflow -g mlflow -m 0750 /etc/mlflow {shlex.quote(env.get("PROMETHEUS_MULTIPROC_DIR", "/tmp/mlflow-prometheus"))}
cat > /etc/mlflow/{role}.env <<'ENV'
{env_file}
ENV
chmod 0640 /etc/mlflow/{role}.env

cat > /etc/systemd/system/mlflow-migrate.service <<'UNIT'
[Unit]
Description=MLflow schema upgrade and index migration
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
User=mlflow
EnvironmentFile=/etc/mlflow/{role}.env
ExecStart=/opt/mlflow/venv/bin/{ENTRYPOINT} migrate
UNIT

cat > /etc/systemd/system/mlflow-{role}.service <<'UNIT'
[Unit]
Description=MLflow tracking {role} server
After=mlflow-migrate.service
Requires=mlflow-migrate.service

[Service]
User=mlflow
EnvironmentFile=/etc/mlflow/{role}.env
ExecStart=/opt/mlflow/venv/bin/{ENTRYPOINT} server -- /opt/mlflow/venv/bin/{command}
LimitNOFILE={server.nofile}
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT

systemctl daemon-reload
systemctl enable --now mlflow-{role}.service
"""
